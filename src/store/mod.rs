//! Mail storage: durable delivery into Maildir (`deliver.rs`) and mbox
//! (`mbox.rs`).

pub mod deliver;
pub mod maildir;
pub mod mbox;
