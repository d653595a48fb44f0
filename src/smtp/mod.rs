//! SMTP: the sans-IO session (`proto`), the connection driver (`inbound`),
//! and recipient routing (`router`).

pub mod inbound;
pub mod proto;
pub mod received;
pub mod router;
