#![no_main]
//! Any bytes from a milter: the reply decoder never panics, consumes
//! whole frames only, refuses oversized frames before buffering them, and
//! what it decodes can be applied to a message (header edits, a new body,
//! a reply code) without a panic.
use libfuzzer_sys::fuzz_target;
use pigeonpost::smtp::milter::edit::Editor;
use pigeonpost::smtp::milter::proto::{self, Response};

const MESSAGE: &[u8] = b"From: a@example.com\r\nSubject: x\r\n folded\r\nX-A: 1\r\n\r\nbody\r\n";

fuzz_target!(|data: &[u8]| {
    // The first byte picks whether the message itself comes from the data.
    let (message, mut rest) = match data.split_first() {
        Some((b, r)) if b & 1 == 1 => {
            let n = (*b as usize >> 1).min(r.len());
            (&r[..n], &r[n..])
        }
        Some((_, r)) => (MESSAGE, r),
        None => (MESSAGE, data),
    };
    let mut editor = Editor::new(message);
    for f in &editor.fields {
        let _ = (f.name(), f.value(true), f.value(false));
    }
    let mut frames = 0;
    loop {
        match proto::decode(rest) {
            Ok(None) => break,
            Err(_) => break,
            Ok(Some((used, response))) => {
                assert!(used >= 5 && used <= rest.len(), "consumed {used} of {}", rest.len());
                assert!(used - 4 <= proto::MAX_FRAME);
                rest = &rest[used..];
                frames += 1;
                match response {
                    Response::AddHeader { name, value } => editor.add(&name, &value, false),
                    Response::InsHeader { index, name, value } => {
                        editor.insert(index, &name, &value, true)
                    }
                    Response::ChgHeader { index, name, value } => {
                        editor.change(index, &name, &value, false)
                    }
                    Response::ReplBody(chunk) => editor.body_chunk(&chunk),
                    Response::ReplyCode(text) => {
                        let (code, lines) = proto::split_reply_code(&text);
                        assert!((400..600).contains(&code));
                        assert!(!lines.is_empty());
                    }
                    _ => {}
                }
            }
        }
        if frames > 10_000 {
            break;
        }
    }
    let out = editor.finish(message);
    // The rebuilt message still splits into a header section and a body.
    let _ = Editor::new(&out);
});
