#![no_main]
//! Any bytes from a remote SMTP server, in any split: the outbound client
//! never panics, keeps its buffer bounded, always ends, and when the
//! connection ends every recipient has a decided status (or the host
//! failed as a whole). Also fuzzes the 8BITMIME downgrade on the same bytes.
use libfuzzer_sys::fuzz_target;
use pigeonpost::smtp::outbound::client::{
    Client, ClientConfig, Rcpt, RcptStatus, Step, TlsPolicy, Transaction,
};
use pigeonpost::smtp::outbound::downgrade;

fuzz_target!(|data: &[u8]| {
    let flags = data.first().copied().unwrap_or(0);
    let tls = match flags & 3 {
        0 => TlsPolicy::None,
        1 => TlsPolicy::May,
        2 => TlsPolicy::Encrypt,
        _ => TlsPolicy::Verify,
    };
    let cfg = ClientConfig {
        helo: "mail.example.com".into(),
        tls,
        try_tls: flags & 4 == 4,
        credentials: (flags & 8 == 8).then(|| ("user".into(), "pass".into())),
    };
    let n = 1 + (flags >> 4) as usize % 4;
    let txn = Transaction {
        sender: "a@example.com".into(),
        rcpts: (0..n)
            .map(|i| Rcpt {
                address: format!("r{i}@remote.example"),
                notify: 0,
                orcpt: None,
            })
            .collect(),
        size: 1000,
        eight_bit: flags & 16 == 16,
        smtputf8: flags & 32 == 32,
        ret_full: None,
        envid: Some("x".into()),
    };
    let mut c = Client::new(cfg, txn);
    let mut rest = data.get(1..).unwrap_or_default();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 100_000, "client does not make progress");
        let _ = c.take_output();
        match c.next_step() {
            Step::NeedInput => {
                if rest.is_empty() {
                    c.abort("connection closed");
                    continue;
                }
                let take = 1 + rest[0] as usize % 64;
                let (chunk, tail) = rest.split_at(take.min(rest.len()));
                c.feed(chunk);
                rest = tail;
            }
            Step::StartTls => c.tls_started(),
            Step::SendMessage => c.message_sent(),
            Step::Done => break,
        }
    }
    if let Ok(statuses) = c.outcome() {
        assert_eq!(statuses.len(), n);
        assert!(
            statuses.iter().all(|s| *s != RcptStatus::Unknown),
            "undecided recipient at the end: {statuses:?}"
        );
    }
    let _ = downgrade::to_7bit(data);
});
