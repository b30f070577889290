//! What `--print-config` prints: the effective settings as TOML that `--config` reads back,
//! without a secret in it, and without values derived from this machine (so the output is a
//! portable config): each left out is named in a comment at the top.

use toml::Value;

use crate::config::Settings;

/// The secrets of a configuration, as paths of keys (`*`: every element of an array).
const SECRETS: &[&[&str]] = &[
    &["api_key"],
    &["redis", "pass"],
    &["token", "secret"],
    &["webhook", "secret"],
    &["rpc_proxy", "secret"],
    &["pusher", "app_secret"],
    &["pusher", "apps", "*", "secret"],
];

/// Addresses (or lists of them) that may carry a password (`redis://:password@host`) or a token
/// (`nats://token@host`).
const URLS: &[&[&str]] = &[&["redis", "url"], &["redis", "cluster"], &["nats", "url"]];

/// Removes the value at `path` under `value`; returns the dotted names of those removed.
fn remove(value: &mut Value, path: &[&str], name: &str) -> Vec<String> {
    let Some((first, rest)) = path.split_first() else {
        return Vec::new();
    };
    match (value, *first) {
        (Value::Array(items), "*") => items
            .iter_mut()
            .enumerate()
            .flat_map(|(i, item)| remove(item, rest, &format!("{name}[{i}]")))
            .collect(),
        (Value::Table(table), key) => {
            let name = if name.is_empty() {
                key.to_owned()
            } else {
                format!("{name}.{key}")
            };
            if rest.is_empty() {
                return table.remove(key).map(|_| name).into_iter().collect();
            }
            table
                .get_mut(key)
                .map(|inner| remove(inner, rest, &name))
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// `url` with its password (or, with no `:` in its user info, the whole user info: a token)
/// replaced by `********`; `None` when it has none.
fn without_password(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (userinfo, host) = rest.split_once('@')?;
    Some(match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:********@{host}"),
        None => format!("{scheme}://********@{host}"),
    })
}

/// The text `--print-config` prints for `settings` (as given) and `effective` (with every
/// default filled in).
pub fn print(settings: &Settings, effective: &Settings) -> Result<String, String> {
    let mut value = Value::try_from(effective).map_err(|e| e.to_string())?;
    let mut notes = Vec::new();
    let hidden: Vec<String> = SECRETS
        .iter()
        .flat_map(|path| remove(&mut value, path, ""))
        .collect();
    if !hidden.is_empty() {
        notes.push(format!(
            "# Secrets left out: {}. They are where you set them (the config file, TIDINGS_* \
             variables or flags); this output never shows them.",
            hidden.join(", ")
        ));
    }
    for path in URLS {
        let urls: Vec<&mut String> = match path
            .iter()
            .try_fold(&mut value, |v, key| v.as_table_mut()?.get_mut(*key))
        {
            Some(Value::String(url)) => vec![url],
            Some(Value::Array(items)) => items
                .iter_mut()
                .filter_map(|item| match item {
                    Value::String(url) => Some(url),
                    _ => None,
                })
                .collect(),
            _ => continue,
        };
        let mut masked = false;
        for url in urls {
            if let Some(without) = without_password(url) {
                *url = without;
                masked = true;
            }
        }
        if masked {
            notes.push(format!(
                "# {}: passwords and tokens are shown as ********.",
                path.join(".")
            ));
        }
    }
    if settings.max_connections.is_none()
        && let Some(derived) = value
            .as_table_mut()
            .and_then(|t| t.remove("max_connections"))
    {
        let reserve = crate::files::RESERVE;
        notes.push(format!(
            "# max_connections is left out: unset, it is derived when serving from the open-file \
             limit (the limit less {reserve}, or half of a limit of {} or less): {derived} on \
             this machine.",
            2 * reserve
        ));
    }
    let body = toml::to_string(&value).map_err(|e| e.to_string())?;
    let mut text = notes.join("\n");
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    Ok(text + &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_an_address_is_masked() {
        assert_eq!(
            without_password("redis://:hunter2@10.0.0.1:6379/0").as_deref(),
            Some("redis://:********@10.0.0.1:6379/0")
        );
        assert_eq!(
            without_password("nats://s3cr3t-token@10.0.0.1:4222").as_deref(),
            Some("nats://********@10.0.0.1:4222")
        );
        assert_eq!(without_password("redis://127.0.0.1:6379/0"), None);
    }

    /// Redis's SocketStream-style `pass`, the Redis Cluster's node addresses and NATS's address
    /// hold secrets too (`print` needs no connection: `--print-config` connects before it).
    #[test]
    fn the_brokers_passwords_are_not_printed() {
        let settings: Settings = toml::from_str(
            "[redis]\npass = \"pw-pass\"\ncluster = [\"redis://:pw-node1@10.0.0.1:7000\", \
             \"redis://10.0.0.2:7000\"]\n[nats]\nurl = \"nats://pw-token@10.0.0.3:4222\"\n",
        )
        .unwrap();
        let printed = print(&settings, &settings).unwrap();
        assert!(!printed.contains("pw-"), "{printed}");
        for name in ["redis.pass", "# redis.cluster:", "# nats.url:"] {
            assert!(printed.contains(name), "{name}: {printed}");
        }
        assert!(printed.contains("redis://10.0.0.2:7000"), "{printed}");
    }
}
