//! External publishes in SocketStream's JSON format, read from the ingest channel (`ss:event`):
//!
//! ```text
//! {"t":"all","e":EVENT,"p":[ARGS]}
//! {"t":"channel","channels":[…],"e":EVENT,"p":[ARGS]}
//! {"t":"user","users":[…],"e":EVENT,"p":[ARGS]}
//! {"t":"socketId","socketId":ID,"e":EVENT,"p":[ARGS]}
//! ```
//!
//! `channels` and `users` take one name or an array; `p` may be left out for no arguments. Every
//! node reads each message and delivers it to its own sockets. A message breaking the limits a
//! publish through the API keeps (`max_name_len`, `max_args_size`, `max_args_depth`) is skipped.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ids::SocketId;
use crate::limits::Limits;
use crate::model::{BusMessage, Event, Target};
use crate::names::{IntoNames, OneOrMany};

/// An ingest message as sent.
#[derive(Deserialize)]
struct Ingest<'a> {
    t: &'a str,
    e: String,
    #[serde(borrow)]
    p: Option<&'a RawValue>,
    channels: Option<OneOrMany>,
    users: Option<OneOrMany>,
    #[serde(rename = "socketId")]
    socket_id: Option<String>,
}

/// Reads one ingest message as the bus messages it stands for (one per channel or user); the
/// error says what is wrong with it.
pub(crate) fn decode(payload: &[u8], limits: &Limits) -> Result<Vec<BusMessage>, String> {
    let ingest: Ingest<'_> = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    limits
        .check_name("event name", &ingest.e)
        .map_err(|e| format!("\"e\": {e}"))?;
    if let Some(p) = ingest.p {
        limits
            .check_args(p.get())
            .map_err(|e| format!("\"p\": {e}"))?;
    }
    let args: Arc<RawValue> = match ingest.p {
        None => Arc::from(RawValue::from_string("[]".into()).map_err(|e| e.to_string())?),
        Some(p) if p.get().starts_with('[') => Arc::from(p.to_owned()),
        Some(_) => return Err("\"p\" (the arguments) is not an array".into()),
    };
    let names = |field: &'static str, names: Option<OneOrMany>| {
        let names = names.map(IntoNames::into_names).unwrap_or_default();
        if names.is_empty() {
            return Err(format!("\"{field}\" must name at least one"));
        }
        limits
            .check_names(field, &names)
            .map_err(|e| format!("\"{field}\": {e}"))?;
        Ok(names)
    };
    let targets: Vec<(Target, Option<Arc<str>>)> = match ingest.t {
        "all" => vec![(Target::All, None)],
        "channel" => names("channels", ingest.channels)?
            .into_iter()
            .map(|c| (Target::Channel(c.clone()), Some(c)))
            .collect(),
        "user" => names("users", ingest.users)?
            .into_iter()
            .map(|u| (Target::User(u), None))
            .collect(),
        "socketId" => {
            let id = ingest.socket_id.ok_or("\"socketId\" is missing")?;
            let id: SocketId = id.parse().map_err(|e| format!("{e}"))?;
            vec![(Target::Socket(id), None)]
        }
        other => return Err(format!("unknown \"t\" {other:?}")),
    };
    let name: Arc<str> = ingest.e.into();
    Ok(targets
        .into_iter()
        .map(|(target, channel)| BusMessage::Publish {
            target,
            event: Event::new(name.clone(), args.clone(), channel),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(json: &str) -> Vec<(Target, Option<String>, String)> {
        decode(json.as_bytes(), &Limits::default())
            .unwrap()
            .into_iter()
            .map(|m| match m {
                BusMessage::Publish { target, event } => (
                    target,
                    event.channel().map(String::from),
                    format!("{} {}", event.name(), event.args().get()),
                ),
                _ => panic!("ingest makes only publishes"),
            })
            .collect()
    }

    #[test]
    fn socketstream_formats_are_read_as_is() {
        assert_eq!(
            targets(r#"{"t":"all","e":"flash","p":["hi"]}"#),
            [(Target::All, None, r#"flash ["hi"]"#.into())]
        );
        assert_eq!(
            targets(r#"{"t":"channel","channels":["a","b"],"e":"m","p":[1]}"#),
            [
                (
                    Target::Channel("a".into()),
                    Some("a".into()),
                    "m [1]".into()
                ),
                (
                    Target::Channel("b".into()),
                    Some("b".into()),
                    "m [1]".into()
                ),
            ]
        );
        assert_eq!(
            targets(r#"{"t":"user","users":"u1","e":"m"}"#),
            [(Target::User("u1".into()), None, "m []".into())]
        );
        assert_eq!(
            targets(r#"{"t":"socketId","socketId":"n1.4","e":"m","p":[]}"#),
            [(Target::Socket("n1.4".parse().unwrap()), None, "m []".into())]
        );
    }

    #[test]
    fn malformed_messages_say_why() {
        let why = |json: &str| decode(json.as_bytes(), &Limits::default()).unwrap_err();
        assert!(why("not json").contains("expected"));
        assert!(why(r#"{"t":"all"}"#).contains("missing field `e`"));
        assert!(why(r#"{"t":"all","e":""}"#).contains("empty"));
        assert!(why(r#"{"t":"all","e":"x","p":{}}"#).contains("not an array"));
        assert!(why(r#"{"t":"channel","e":"x","p":[]}"#).contains("channels"));
        assert!(why(r#"{"t":"user","users":[],"e":"x"}"#).contains("users"));
        assert!(why(r#"{"t":"socketId","e":"x"}"#).contains("socketId"));
        assert!(why(r#"{"t":"socketId","socketId":"zz","e":"x"}"#).contains("socket id"));
        assert!(why(r#"{"t":"everyone","e":"x"}"#).contains("unknown"));
        let deep = format!(
            r#"{{"t":"all","e":"x","p":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        );
        assert!(why(&deep).contains("deeper than 64"), "{}", why(&deep));
        let big = format!(r#"{{"t":"all","e":"x","p":["{}"]}}"#, "x".repeat(70_000));
        assert!(why(&big).contains("the limit is 65536"), "{}", why(&big));
        let long = format!(
            r#"{{"t":"channel","channels":["{}"],"e":"x"}}"#,
            "c".repeat(300)
        );
        assert!(why(&long).contains("channels"));
    }
}
