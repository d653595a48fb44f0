//! What to do with a verified message: `dmarc_policy` and `spf_policy`
//! (our keys). Pure functions, so every rule is a unit test.
//!
//! - `dmarc_policy = report` (the default) only writes the header.
//!   `enforce` applies the sender's published policy to a DMARC `fail`:
//!   `p=reject` gets `550 5.7.1` at the end of DATA, `p=quarantine` goes
//!   to the recipient's Junk folder. `pct=` samples (RFC 7489 §6.6.4): a
//!   message outside the sample gets the next milder policy.
//! - `spf_policy = reject_fail` refuses an SPF `fail` at MAIL FROM with
//!   `550 5.7.23` (RFC 7372), as policyd-spf does by default.
//! - A temporary DNS failure never turns into a permanent refusal: where a
//!   refusal could follow, the answer is `451 4.7.x`, and the sender
//!   retries.

use super::verify::{DmarcPolicy, Outcome, Report};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DmarcMode {
    Off,
    #[default]
    Report,
    Enforce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpfMode {
    Off,
    #[default]
    Report,
    RejectFail,
}

impl DmarcMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(DmarcMode::Off),
            "report" => Ok(DmarcMode::Report),
            "enforce" => Ok(DmarcMode::Enforce),
            other => Err(format!("'{other}': use report, enforce or off")),
        }
    }
}

impl SpfMode {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(SpfMode::Off),
            "report" => Ok(SpfMode::Report),
            "reject_fail" => Ok(SpfMode::RejectFail),
            other => Err(format!("'{other}': use report, reject_fail or off")),
        }
    }
}

/// An SMTP answer: code, enhanced code, text.
pub type Refusal = (u16, &'static str, String);

/// What happens to the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Deliver,
    /// Into each recipient's Junk folder instead of INBOX.
    Quarantine,
    Refuse(Refusal),
}

/// The decision at the end of DATA. `sample` is a number in 0..100 drawn
/// per message for `pct=`.
pub fn decide(mode: DmarcMode, report: &Report, sample: u8) -> Decision {
    if mode != DmarcMode::Enforce {
        return Decision::Deliver;
    }
    if report.author_unclear && report.dmarc != Outcome::TempError {
        // RFC 7489 §6.6.1: several author domains (or none) would slip
        // past DMARC; such messages are "typically rejected".
        return Decision::Refuse((
            550,
            "5.7.1",
            "Message needs exactly one author domain in From: (RFC 7489 §6.6.1)".into(),
        ));
    }
    match report.dmarc {
        Outcome::Fail => {
            let Some(pct) = report.dmarc_pct else {
                return Decision::Refuse((
                    451,
                    "4.7.5",
                    format!(
                        "Temporary DMARC evaluation failure for {}, try again later",
                        report.dmarc_domain
                    ),
                ));
            };
            let in_sample = sample < pct;
            match (report.dmarc_policy, in_sample) {
                (DmarcPolicy::Reject, true) => Decision::Refuse((
                    550,
                    "5.7.1",
                    format!(
                        "Email rejected per DMARC policy for {}",
                        report.dmarc_domain
                    ),
                )),
                (DmarcPolicy::Reject, false) | (DmarcPolicy::Quarantine, true) => {
                    Decision::Quarantine
                }
                _ => Decision::Deliver,
            }
        }
        // A DNS failure somewhere under a policy that could refuse: try
        // later rather than guess either way.
        Outcome::TempError
            if matches!(
                report.dmarc_policy,
                DmarcPolicy::Reject | DmarcPolicy::Unknown
            ) =>
        {
            Decision::Refuse((
                451,
                "4.7.5",
                format!(
                    "Temporary DMARC evaluation failure for {}, try again later",
                    report.dmarc_domain
                ),
            ))
        }
        _ => Decision::Deliver,
    }
}

/// The decision at MAIL FROM, from the SPF result alone.
pub fn decide_spf(
    mode: SpfMode,
    spf: Outcome,
    ip: std::net::IpAddr,
    domain: &str,
) -> Option<Refusal> {
    if mode != SpfMode::RejectFail {
        return None;
    }
    match spf {
        Outcome::Fail => Some((
            550,
            "5.7.23",
            format!("SPF validation failed: {ip} is not allowed to send mail for {domain}"),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(dmarc: Outcome, policy: DmarcPolicy, pct: u8) -> Report {
        let pct = Some(pct);
        Report {
            spf: Outcome::Fail,
            dkim: Outcome::Fail,
            dmarc,
            arc: Outcome::None,
            dmarc_domain: "example.com".into(),
            dmarc_policy: policy,
            dmarc_pct: pct,
            author_unclear: false,
            header: String::new(),
        }
    }

    #[test]
    fn report_mode_never_refuses() {
        let r = report(Outcome::Fail, DmarcPolicy::Reject, 100);
        assert_eq!(decide(DmarcMode::Report, &r, 0), Decision::Deliver);
        assert_eq!(decide(DmarcMode::Off, &r, 0), Decision::Deliver);
    }

    #[test]
    fn enforce_follows_the_published_policy() {
        let reject = report(Outcome::Fail, DmarcPolicy::Reject, 100);
        assert!(matches!(
            decide(DmarcMode::Enforce, &reject, 99),
            Decision::Refuse((550, "5.7.1", _))
        ));
        let quarantine = report(Outcome::Fail, DmarcPolicy::Quarantine, 100);
        assert_eq!(
            decide(DmarcMode::Enforce, &quarantine, 50),
            Decision::Quarantine
        );
        let none = report(Outcome::Fail, DmarcPolicy::None, 100);
        assert_eq!(decide(DmarcMode::Enforce, &none, 0), Decision::Deliver);
        let pass = report(Outcome::Pass, DmarcPolicy::Reject, 100);
        assert_eq!(decide(DmarcMode::Enforce, &pass, 0), Decision::Deliver);
    }

    #[test]
    fn pct_samples_and_the_rest_get_the_milder_policy() {
        let reject = report(Outcome::Fail, DmarcPolicy::Reject, 30);
        assert!(matches!(
            decide(DmarcMode::Enforce, &reject, 29),
            Decision::Refuse(_)
        ));
        assert_eq!(
            decide(DmarcMode::Enforce, &reject, 30),
            Decision::Quarantine
        );
        let quarantine = report(Outcome::Fail, DmarcPolicy::Quarantine, 0);
        assert_eq!(
            decide(DmarcMode::Enforce, &quarantine, 0),
            Decision::Deliver
        );
    }

    #[test]
    fn unclear_authors_are_refused_and_an_unknown_pct_or_policy_is_temporary() {
        let mut r = report(Outcome::None, DmarcPolicy::None, 100);
        r.author_unclear = true;
        assert!(matches!(
            decide(DmarcMode::Enforce, &r, 0),
            Decision::Refuse((550, _, _))
        ));
        assert_eq!(decide(DmarcMode::Report, &r, 0), Decision::Deliver);
        let mut r = report(Outcome::Fail, DmarcPolicy::Reject, 100);
        r.dmarc_pct = None;
        assert!(matches!(
            decide(DmarcMode::Enforce, &r, 0),
            Decision::Refuse((451, _, _))
        ));
        // Out of time before the policy was known.
        let r = report(Outcome::TempError, DmarcPolicy::Unknown, 100);
        assert!(matches!(
            decide(DmarcMode::Enforce, &r, 0),
            Decision::Refuse((451, _, _))
        ));
    }

    #[test]
    fn dns_trouble_is_temporary() {
        let r = report(Outcome::TempError, DmarcPolicy::Reject, 100);
        assert!(matches!(
            decide(DmarcMode::Enforce, &r, 0),
            Decision::Refuse((451, _, _))
        ));
        let ip = "192.0.2.1".parse().unwrap();
        assert!(decide_spf(SpfMode::RejectFail, Outcome::TempError, ip, "d").is_none());
        assert!(decide_spf(SpfMode::RejectFail, Outcome::SoftFail, ip, "d").is_none());
        assert!(matches!(
            decide_spf(SpfMode::RejectFail, Outcome::Fail, ip, "d"),
            Some((550, "5.7.23", _))
        ));
        assert!(decide_spf(SpfMode::Report, Outcome::Fail, ip, "d").is_none());
    }
}
