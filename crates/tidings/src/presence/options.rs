//! The heartbeat options, named as in ss-heartbeat-responder.

use std::time::Duration;

use crate::error::BuildError;

/// How clients' heartbeats are judged. The defaults are ss-heartbeat-responder's.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Heartbeat {
    /// Name used in logs and as the store's key prefix (default `heartbeat`).
    pub name: String,
    /// 0: log nothing; 1: log connect, reconnect and disconnect; 2: also every beat (default 0).
    pub logging: u8,
    /// How often expired sessions are purged (default 25 s).
    pub purge_delay: Duration,
    /// How often clients beat; they learn it when they connect (default 30 s).
    pub beat_delay: Duration,
    /// How long a beat keeps its session live; must exceed `beat_delay` (default 40 s).
    pub expire_delay: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            name: "heartbeat".into(),
            logging: 0,
            purge_delay: Duration::from_secs(25),
            beat_delay: Duration::from_secs(30),
            expire_delay: Duration::from_secs(40),
        }
    }
}

impl Heartbeat {
    /// Refuses options that cannot work, saying why.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        let invalid = |name, reason: String| Err(BuildError::InvalidSetting { name, reason });
        if self.name.is_empty() || self.name.len() > 64 {
            return invalid("heartbeat.name", "must be 1 to 64 bytes long".into());
        }
        if self.logging > 2 {
            return invalid(
                "heartbeat.logging",
                format!(
                    "{} is not 0 (nothing), 1 (events) or 2 (events and beats)",
                    self.logging
                ),
            );
        }
        let delays = [
            ("heartbeat.purge_delay", self.purge_delay),
            ("heartbeat.beat_delay", self.beat_delay),
            ("heartbeat.expire_delay", self.expire_delay),
        ];
        if let Some((name, _)) = delays.iter().find(|(_, d)| d.is_zero()) {
            return invalid(name, "must be more than 0".into());
        }
        if self.expire_delay <= self.beat_delay {
            return invalid(
                "heartbeat.expire_delay",
                format!(
                    "{:?} must be longer than beat_delay ({:?}): otherwise a session that beats on \
                     time expires between two beats",
                    self.expire_delay, self.beat_delay
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expire_must_exceed_beat() {
        let options = Heartbeat {
            expire_delay: Duration::from_secs(30),
            ..Heartbeat::default()
        };
        let err = options.validate().unwrap_err().to_string();
        assert!(err.contains("heartbeat.expire_delay"), "{err}");
        assert!(err.contains("longer than beat_delay"), "{err}");
        assert!(Heartbeat::default().validate().is_ok());
        let zero = Heartbeat {
            purge_delay: Duration::ZERO,
            ..Heartbeat::default()
        };
        assert!(
            zero.validate()
                .unwrap_err()
                .to_string()
                .contains("purge_delay")
        );
        let loud = Heartbeat {
            logging: 3,
            ..Heartbeat::default()
        };
        assert!(loud.validate().unwrap_err().to_string().contains("logging"));
    }
}
