//! Hot reload of tables and users: an edit is in force within 2 s, garbage
//! keeps the last good version (and is logged with file:line), and a
//! Kubernetes ConfigMap `..data` symlink swap is seen. (tls.rs covers
//! certificates.)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pigeonpost::tables::map::Map;
use pigeonpost::tables::passwd_file::PasswdFile;
use pigeonpost::tables::reload::{self, Reloadable};
use pigeonpost::tables::TableFile;

use crate::util::{replace, test_listen, Server, Tree};

/// Polls `f` until it is true; returns how long that took, failing after 2 s.
fn within_2s(what: &str, f: impl Fn() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{what}: not seen within 2 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    start.elapsed()
}

fn lookup(t: &TableFile<Map>, key: &str) -> Option<String> {
    t.get().get(key).map(str::to_string)
}

#[test]
fn edited_table_is_reloaded_and_garbage_is_refused() {
    let t = Tree::new();
    let path = t.write("postfix/virtual", "info@example.com  john@example.com\n");
    let table = TableFile::<Map>::open("virtual_alias_maps".into(), &path).unwrap();
    let _watch = reload::watch(vec![table.clone() as Arc<dyn Reloadable>]);
    assert_eq!(
        lookup(&table, "info@example.com").as_deref(),
        Some("john@example.com")
    );

    // In-place edit (same inode), as `echo >>` or some editors do.
    std::fs::write(
        &path,
        "info@example.com  jane@example.com\nsales@example.com bob@example.com\n",
    )
    .unwrap();
    within_2s("in-place edit", || {
        lookup(&table, "info@example.com").as_deref() == Some("jane@example.com")
    });
    assert_eq!(
        lookup(&table, "SALES@Example.com").as_deref(),
        Some("bob@example.com")
    );

    // Write-and-rename, as vim and config-management tools do.
    replace(&path, "info@example.com  carol@example.com\n");
    within_2s("rename-over", || {
        lookup(&table, "info@example.com").as_deref() == Some("carol@example.com")
    });

    // Garbage: the old table stays in force.
    replace(
        &path,
        "info@example.com  dave@example.com\nthis-line-has-no-value\n",
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        lookup(&table, "info@example.com").as_deref(),
        Some("carol@example.com")
    );

    // Fixing the file is picked up again.
    replace(&path, "info@example.com  dave@example.com\n");
    within_2s("fixed file", || {
        lookup(&table, "info@example.com").as_deref() == Some("dave@example.com")
    });
}

#[test]
fn configmap_symlink_swap_is_reloaded() {
    // kubelet's layout: virtual -> ..data/virtual, ..data -> ..2026_01_01
    let t = Tree::new();
    let dir = t.path("cm");
    t.write("cm/..2026_01_01/virtual", "a@example.com one@example.com\n");
    t.write(
        "cm/..2026_01_01/users",
        "john@example.com:{PLAIN}secret1::::::\n",
    );
    std::os::unix::fs::symlink("..2026_01_01", dir.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/virtual", dir.join("virtual")).unwrap();
    std::os::unix::fs::symlink("..data/users", dir.join("users")).unwrap();
    let table = TableFile::<Map>::open("virtual_alias_maps".into(), &dir.join("virtual")).unwrap();
    let users = TableFile::<PasswdFile>::open("passdb".into(), &dir.join("users")).unwrap();
    let _watch = reload::watch(vec![table.clone() as Arc<dyn Reloadable>, users.clone()]);

    t.write("cm/..2026_01_02/virtual", "a@example.com two@example.com\n");
    t.write(
        "cm/..2026_01_02/users",
        "john@example.com:{PLAIN}secret2::::::\n",
    );
    std::os::unix::fs::symlink("..2026_01_02", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..2026_01_01")).unwrap();

    let took = within_2s("..data swap", || {
        lookup(&table, "a@example.com").as_deref() == Some("two@example.com")
    });
    eprintln!("table swap seen after {took:?}");
    within_2s("passwd-file swap", || {
        users
            .get()
            .get("john@example.com")
            .and_then(|e| e.password.clone())
            .as_deref()
            == Some("{PLAIN}secret2")
    });
}

fn write_server_config(t: &Tree, virtual_path: &Path) -> std::path::PathBuf {
    t.write(
        "pigeonpost.toml",
        &format!(
            "myhostname = \"mail.example.com\"\nalias_maps = \"\"\nvirtual_alias_maps = \"hash:{}\"\n{}",
            virtual_path.display(),
            test_listen(&[])
        ),
    )
}

#[test]
fn the_server_logs_reloads_and_broken_lines() {
    let t = Tree::new();
    let path = t.write("postfix/virtual", "info@example.com john@example.com\n");
    let server = Server::start(&write_server_config(&t, &path), &[]);
    // A connection open across the reload is not dropped.
    let mut open = std::net::TcpStream::connect(server.addr("http")).unwrap();
    replace(&path, "info@example.com jane@example.com\n");
    let ok = server
        .wait_log("reloaded", Duration::from_secs(3))
        .expect("reload logged");
    assert!(ok.contains("virtual_alias_maps hash:"), "{ok}");
    {
        use std::io::{Read, Write};
        write!(open, "GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        let mut reply = String::new();
        open.read_to_string(&mut reply).unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    }
    replace(&path, "info@example.com jane@example.com\n\nbroken\n");
    let bad = server
        .wait_log("reload failed", Duration::from_secs(3))
        .expect("failure logged");
    assert!(
        bad.contains(&format!("{}:3:", path.display())),
        "names file and line: {bad}"
    );
}

#[test]
fn a_broken_table_at_start_is_a_config_error() {
    let t = Tree::new();
    let path = t.write("postfix/virtual", "info@example.com\n");
    let cfg = write_server_config(&t, &path);
    let out = crate::util::run(&["--config", cfg.to_str().unwrap(), "serve"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = crate::util::stderr(&out);
    assert!(
        err.contains("virtual_alias_maps") && err.contains(&format!("{}:1:", path.display())),
        "{err}"
    );
    let out = crate::util::run(&["--config", cfg.to_str().unwrap(), "config"], &[]);
    assert_eq!(out.status.code(), Some(2), "`config` checks tables too");
}
