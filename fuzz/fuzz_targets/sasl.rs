#![no_main]
//! Any client lines into any SASL mechanism: no panic, and an exchange
//! always ends within a few steps.
use libfuzzer_sys::fuzz_target;
use pigeonpost::auth::sasl::{Mechanism, SaslExchange, SaslStep};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let mech = [Mechanism::Plain, Mechanism::Login, Mechanism::CramMd5][data.first().map_or(0, |b| *b as usize % 3)];
    let initial = lines.next();
    let (mut ex, mut step) = SaslExchange::start_with_nonce(mech, initial, "mx.example.com", "<1.2@mx>");
    let mut steps = 0;
    while let SaslStep::Challenge(_) = step {
        steps += 1;
        assert!(steps <= 3, "exchange must end");
        match lines.next() {
            Some(l) => step = ex.step(l),
            None => break,
        }
    }
    if let SaslStep::Done(creds) = step {
        let _ = creds.verify("{PLAIN}secret", pigeonpost::auth::scheme::Scheme::Plain);
    }
});
