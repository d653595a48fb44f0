#![no_main]
//! Any bytes as a message: removing forged Authentication-Results never
//! panics, never touches the body, never grows the message, and what it
//! leaves has no field claiming our authserv-id; the other header helpers
//! and the SPF syntax check take anything.
use libfuzzer_sys::fuzz_target;
use pigeonpost::mailauth::headers::{
    authserv_id, count_fields, field_names, from_address, header_end, strip_forged_results,
};

fuzz_target!(|data: &[u8]| {
    let out = strip_forged_results(data, "mx.example.com");
    assert!(out.len() <= data.len());
    let body = &data[header_end(data)..];
    assert!(out.ends_with(body), "the body is untouched");
    let again = strip_forged_results(&out, "mx.example.com");
    assert_eq!(again.len(), out.len(), "nothing forged is left");
    let _ = authserv_id(data);
    let names = field_names(data);
    assert!(count_fields(data, &["from"]) >= usize::from(names.iter().any(|n| n == "from")));
    let _ = from_address(data);
    let _ = pigeonpost::mailauth::spf_syntax::check(&String::from_utf8_lossy(data));
});
