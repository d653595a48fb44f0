//! Hot reload of tables and users (see also tls.rs for certificates).
