//! A tiny authoritative DNS server on UDP loopback for the tests: a zone of
//! (name, type) → answers, everything else NXDOMAIN (or NODATA when the
//! name has other types). It records the queries, and can be told to
//! answer nothing for a name (a timeout). The zone is plain data, so the
//! Python oracles (pyspf, dkimpy) can be given the same records.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

pub enum Answer {
    Mx(u16, &'static str),
    A([u8; 4]),
    /// One TXT record; long values are split into 255-byte strings.
    Txt(String),
    /// NOERROR with no records (NODATA).
    Empty,
    /// No reply at all: the client times out.
    Silent,
}

pub struct FakeDns {
    pub addr: SocketAddr,
    pub queries: Arc<Mutex<Vec<String>>>,
}

impl FakeDns {
    pub fn start(zone: Vec<(String, &'static str, Vec<Answer>)>) -> FakeDns {
        use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
        use hickory_resolver::proto::rr::rdata::{A, MX, TXT};
        use hickory_resolver::proto::rr::{Name, RData, Record};
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let seen = queries.clone();
        let zone: HashMap<(String, String), Vec<Answer>> = zone
            .into_iter()
            .map(|(n, t, a)| ((n.to_ascii_lowercase(), t.to_string()), a))
            .collect();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let Some(query) = q.queries().first().cloned() else {
                    continue;
                };
                let name = query.name().to_ascii().trim_end_matches('.').to_lowercase();
                let rtype = query.query_type().to_string();
                seen.lock().unwrap().push(format!("{name} {rtype}"));
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(q.op_code())
                    .set_authoritative(true)
                    .set_recursion_desired(q.recursion_desired())
                    .set_recursion_available(true)
                    .add_query(query.clone());
                let known_name = zone.keys().any(|(n, _)| *n == name);
                match zone.get(&(name.clone(), rtype)) {
                    Some(answers) => {
                        if answers.iter().any(|a| matches!(a, Answer::Silent)) {
                            continue;
                        }
                        for a in answers {
                            let rdata = match a {
                                Answer::Mx(p, host) => RData::MX(MX::new(
                                    *p,
                                    Name::from_ascii(format!("{host}.")).unwrap(),
                                )),
                                Answer::A(ip) => RData::A(A::from(std::net::Ipv4Addr::from(*ip))),
                                Answer::Txt(text) => RData::TXT(TXT::new(
                                    text.as_bytes()
                                        .chunks(255)
                                        .map(|c| String::from_utf8_lossy(c).into_owned())
                                        .collect(),
                                )),
                                Answer::Empty | Answer::Silent => continue,
                            };
                            r.add_answer(Record::from_rdata(query.name().clone(), 60, rdata));
                        }
                    }
                    None if known_name => {}
                    None => {
                        r.set_response_code(ResponseCode::NXDomain);
                    }
                }
                if let Ok(bytes) = r.to_vec() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        FakeDns { addr, queries }
    }
}
