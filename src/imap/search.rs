//! SEARCH: evaluating RFC 3501 §6.4.4 / RFC 9051 §6.4.4 search keys.
