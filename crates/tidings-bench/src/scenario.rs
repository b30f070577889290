//! Scenarios: how many sockets, how they are grouped, and what is published to them.

use serde::{Deserialize, Serialize};

/// How sockets are grouped, and so what one publish reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Grouping {
    /// Every socket on one channel: a publish reaches all.
    One,
    /// Socket `i` on channel `i % channels`: a publish reaches one channel's sockets.
    Channels,
    /// Socket `i` is user `u{i}`: a publish reaches one socket, addressed by user.
    Users,
    /// Sockets connect and stay idle: memory only.
    Idle,
}

/// One measured run against one server.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    /// Short name, used in file and table names.
    pub name: &'static str,
    /// What it shows, for the report.
    pub title: &'static str,
    /// Connected sockets.
    pub sockets: usize,
    /// How they are grouped.
    pub grouping: Grouping,
    /// Channels, for [`Grouping::Channels`].
    pub channels: usize,
    /// Publishes.
    pub messages: usize,
    /// Publishes per second; 0 for as fast as the server takes them.
    pub rate: u32,
    /// Runs per server; the report keeps each column's median ([`crate::suite::Outcome::median`]).
    pub runs: usize,
}

impl Scenario {
    /// The group message `m` is published to (none for idle scenarios).
    pub fn target(&self, m: usize) -> Option<String> {
        match self.grouping {
            Grouping::One => Some("c0".into()),
            Grouping::Channels => Some(format!("c{}", m % self.channels)),
            Grouping::Users => Some(format!("u{}", (m * 7919) % self.sockets)),
            Grouping::Idle => None,
        }
    }

    /// How many deliveries the whole run should produce.
    pub fn expected(&self) -> u64 {
        let members = |c: usize| (0..self.sockets).filter(|i| i % self.channels == c).count();
        let total: usize = match self.grouping {
            Grouping::One => self.messages * self.sockets,
            Grouping::Channels => (0..self.messages).map(|m| members(m % self.channels)).sum(),
            Grouping::Users => self.messages,
            Grouping::Idle => 0,
        };
        total as u64
    }
}

/// The group of socket `i` (shared with workers, which know only the grouping).
pub fn group_of(grouping: Grouping, channels: usize, i: usize) -> String {
    match grouping {
        Grouping::One => "c0".into(),
        Grouping::Channels => format!("c{}", i % channels.max(1)),
        Grouping::Users => format!("u{i}"),
        Grouping::Idle => "idle".into(),
    }
}

/// The scenarios of a run: the full suite, or a small one that checks the harness.
pub fn suite(quick: bool, max_sockets: usize) -> Vec<Scenario> {
    let n = if quick { 200 } else { 10_000 };
    let scale = |full: usize, small: usize| if quick { small } else { full };
    let fanout = vec![
        Scenario {
            name: "broadcast",
            title: "one channel, all sockets subscribed, 20 publishes/s",
            sockets: n,
            grouping: Grouping::One,
            channels: 1,
            messages: scale(200, 20),
            rate: 20,
            runs: 1,
        },
        // In quick mode large enough for the CPU guard: 300,000 deliveries, some 0.1 s of the
        // limit's CPU time, where `/proc`'s 10 ms ticks still read within 10%.
        Scenario {
            name: "broadcast-max",
            title: "one channel, all sockets subscribed, publishes as fast as accepted (median of 3 runs)",
            sockets: scale(n, 1000),
            grouping: Grouping::One,
            channels: 1,
            messages: scale(100, 300),
            rate: 0,
            runs: scale(3, 1),
        },
        Scenario {
            name: "channels",
            title: "1,000 channels of 10 sockets, 2,000 publishes/s (median of 3 runs)",
            sockets: n,
            grouping: Grouping::Channels,
            channels: scale(1000, 20),
            messages: scale(10_000, 200),
            rate: 2000,
            runs: scale(3, 1),
        },
        Scenario {
            name: "users",
            title: "one user per socket, 2,000 publishes/s to single users (median of 3 runs)",
            sockets: n,
            grouping: Grouping::Users,
            channels: 1,
            messages: scale(10_000, 200),
            rate: 2000,
            runs: scale(3, 1),
        },
    ];
    let idle = [1_000, 10_000, max_sockets].map(|sockets| Scenario {
        name: "idle",
        title: "idle sockets: server memory per socket",
        sockets: if quick { sockets / 50 } else { sockets },
        grouping: Grouping::Idle,
        channels: 1,
        messages: 0,
        rate: 0,
        runs: 1,
    });
    fanout.into_iter().chain(idle).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_deliveries_match_the_grouping() {
        let s = |grouping, channels, messages| Scenario {
            name: "t",
            title: "t",
            sockets: 10,
            grouping,
            channels,
            messages,
            rate: 0,
            runs: 1,
        };
        assert_eq!(s(Grouping::One, 1, 3).expected(), 30);
        // 10 sockets over 3 channels: sizes 4, 3, 3; messages go to c0, c1, c2, c0.
        assert_eq!(s(Grouping::Channels, 3, 4).expected(), 4 + 3 + 3 + 4);
        assert_eq!(s(Grouping::Users, 1, 7).expected(), 7);
        assert_eq!(s(Grouping::Idle, 1, 0).expected(), 0);
        assert_eq!(group_of(Grouping::Channels, 3, 4), "c1");
        assert_eq!(s(Grouping::Users, 1, 1).target(1), Some("u9".into()));
    }
}
