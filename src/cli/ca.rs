//! `swarmnode ca`: create a CA, issue a membership certificate for a peer, show a certificate.

use std::time::Duration;

use super::CaCommand;
use crate::{
    config::ConfigError,
    security::{
        certificate::{self, Certificate},
        identity, secret_file,
    },
    time::now_unix_ms,
};

/// Longest `--valid-for`: a membership that should outlive ten years should be renewed within them.
const MAX_VALID_FOR: Duration = Duration::from_secs(10 * 31_557_600);
/// The last second humantime (and RFC 3339 with four-digit years) can show: 9999-12-31T23:59:59Z.
const LAST_SHOWN_SECOND: u64 = 253_402_300_799;

/// The `ca` subcommands: create a CA, issue a certificate, show one.
pub fn run(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Init { out, force } => {
            let ca = certificate::write_new_ca(&out, force)?;
            println!("{}", certificate::ca_id(&ca.public()));
            eprintln!(
                "CA created: keep {} secret (offline if you can); give {} to every node (--ca-cert)",
                out.join("ca.key").display(),
                out.join("ca.pub").display()
            );
        }
        CaCommand::Sign {
            ca,
            peer,
            name,
            valid_for,
            out,
            force,
        } => {
            if valid_for > MAX_VALID_FOR {
                let most = humantime::format_duration(MAX_VALID_FOR);
                return Err(ConfigError::new("valid-for", format!("must be at most {most}")).into());
            }
            let ca_key = identity::load(&ca.join("ca.key"))?;
            let now = now_unix_ms() / 1000;
            let certificate = Certificate::issue(
                &ca_key,
                peer,
                name.as_deref(),
                now,
                now.saturating_add(valid_for.as_secs()),
            )?;
            secret_file::write_secret(&out, &certificate.encode(), force)?;
            println!("{}", describe_certificate(&certificate, now));
        }
        CaCommand::Show { file, json } => {
            let certificate = certificate::load_certificate(&file)?;
            let now = now_unix_ms() / 1000;
            if json {
                println!("{}", certificate_json(&certificate, now));
            } else {
                println!("{}", describe_certificate(&certificate, now));
            }
        }
    }
    Ok(())
}

fn certificate_status(certificate: &Certificate, now: u64) -> &'static str {
    if now < certificate.not_before {
        "not yet valid"
    } else if now > certificate.not_after {
        "expired"
    } else {
        "valid"
    }
}

/// A certificate's time as RFC 3339; one past year 9999 (a file may say anything) as its unix seconds.
fn rfc3339(unix_seconds: u64) -> String {
    if unix_seconds > LAST_SHOWN_SECOND {
        return format!("{unix_seconds} (unix seconds, after the year 9999)");
    }
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(unix_seconds)).to_string()
}

fn describe_certificate(certificate: &Certificate, now: u64) -> String {
    format!(
        "peer        {}\nname        {}\nvalid from  {}\nvalid until {}\nsigned by   CA {}\nstatus      {}",
        certificate.peer,
        certificate.name.as_deref().unwrap_or("-"),
        rfc3339(certificate.not_before),
        rfc3339(certificate.not_after),
        certificate::ca_id(&certificate.ca),
        certificate_status(certificate, now),
    )
}

fn certificate_json(certificate: &Certificate, now: u64) -> serde_json::Value {
    serde_json::json!({
        "peer": certificate.peer.to_string(),
        "name": certificate.name,
        "not_before": certificate.not_before,
        "not_after": certificate.not_after,
        "ca": certificate::ca_id(&certificate.ca),
        "status": certificate_status(certificate, now),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_certificate_time_can_be_shown() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(LAST_SHOWN_SECOND), "9999-12-31T23:59:59Z");
        assert!(rfc3339(u64::MAX).contains("after the year 9999"));
        assert_eq!(humantime::format_duration(MAX_VALID_FOR).to_string(), "10years");
    }
}
