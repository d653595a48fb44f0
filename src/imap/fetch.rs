//! FETCH data items: ENVELOPE, BODYSTRUCTURE, BODY[section]<partial>.
