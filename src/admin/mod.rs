//! Administration commands that change the files the server reads:
//! `pigeonpost user add|passwd|del|list|show` and `pigeonpost alias
//! add|del|list` (like `doveadm user`, `mox adduser` and editing
//! `/etc/postfix/virtual` by hand, without `postmap`). Every edit goes
//! through `tables::edit` (lock, temporary file, fsync, rename), so the
//! running server picks it up by its usual hot reload.

pub mod import;
pub mod users;

/// Why an admin command failed, with the exit code `main` returns
/// (2 for usage or configuration mistakes, 1 for run-time failures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    pub code: u8,
    pub message: String,
}

impl AdminError {
    /// A mistake in what was asked or in the configuration: exit 2.
    pub fn usage(message: impl Into<String>) -> Self {
        AdminError {
            code: 2,
            message: message.into(),
        }
    }

    /// Something failed while doing it (I/O): exit 1.
    pub fn runtime(message: impl Into<String>) -> Self {
        AdminError {
            code: 1,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for AdminError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
