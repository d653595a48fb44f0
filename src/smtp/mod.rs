//! SMTP: the sans-IO session (`proto`), the connection driver (`inbound`),
//! recipient routing (`router`), taking responsibility for accepted mail
//! (`accept`), the outbound queue (`queue`) and the SMTP client (`outbound`).

pub mod accept;
pub mod inbound;
pub mod outbound;
pub mod proto;
pub mod queue;
pub mod received;
pub mod router;
