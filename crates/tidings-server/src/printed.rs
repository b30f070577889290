//! What `--print-config` prints: the effective settings as TOML that `--config` reads back,
//! without a secret in it, and without values derived from this machine (so the output is a
//! portable config): each left out is named in a comment at the top.

use toml::Value;

use crate::config::Settings;

/// The secrets of a configuration, as paths of keys (`*`: every element of an array).
const SECRETS: &[&[&str]] = &[
    &["api_key"],
    &["token", "secret"],
    &["webhook", "secret"],
    &["rpc_proxy", "secret"],
    &["pusher", "app_secret"],
    &["pusher", "apps", "*", "secret"],
];

/// Addresses that may carry a password (`redis://:password@host`).
const URLS: &[&[&str]] = &[&["redis", "url"], &["nats", "url"]];

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

/// `url` with its password, if any, replaced by `********`.
fn without_password(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (userinfo, host) = rest.split_once('@')?;
    let (user, _password) = userinfo.split_once(':')?;
    Some(format!("{scheme}://{user}:********@{host}"))
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
        let Some(Value::String(url)) = path
            .iter()
            .try_fold(&mut value, |v, key| v.as_table_mut()?.get_mut(*key))
        else {
            continue;
        };
        if let Some(masked) = without_password(url) {
            *url = masked;
            notes.push(format!(
                "# {}: its password is shown as ********.",
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
        assert_eq!(without_password("redis://127.0.0.1:6379/0"), None);
    }
}
