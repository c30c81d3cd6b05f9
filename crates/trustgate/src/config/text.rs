//! Text-level steps of loading: `${NAME}` substitution in string values, and "did you mean"
//! suggestions for unknown fields.

use super::ConfigError;

/// Adds "did you mean `audiences`?" to an unknown-field error whose field is a near miss of a
/// valid one (at most a third of its letters wrong, and at least one).
pub(super) fn with_suggestion(message: String) -> String {
    let Some((_, rest)) = message.split_once("unknown field `") else {
        return message;
    };
    let Some((unknown, rest)) = rest.split_once('`') else {
        return message;
    };
    let Some((_, expected)) = rest.split_once("expected one of ") else {
        return message;
    };
    let candidates = expected
        .split(',')
        .map(|c| c.trim().trim_matches('`'))
        .filter(|c| !c.is_empty());
    let best = candidates
        .map(|c| (edit_distance(unknown, c), c))
        .min_by_key(|&(distance, _)| distance);
    match best {
        Some((distance, candidate)) if distance <= (unknown.len() / 3).max(1) => {
            format!("{message}\ndid you mean `{candidate}`?")
        }
        _ => message,
    }
}

/// Levenshtein distance over bytes; field names are short ASCII.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &x) in a.as_bytes().iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &y) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(x != y);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

pub(super) fn substitute(
    value: &mut toml::Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(text) => {
            if text.contains('$') {
                *text = substitute_str(text, env)?;
            }
            Ok(())
        }
        toml::Value::Array(items) => items.iter_mut().try_for_each(|v| substitute(v, env)),
        toml::Value::Table(table) => table.iter_mut().try_for_each(|(_, v)| substitute(v, env)),
        _ => Ok(()),
    }
}

pub(super) fn substitute_str(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(escaped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = escaped;
        } else if let Some(open) = after.strip_prefix("${") {
            let end = open.find('}').ok_or_else(|| {
                ConfigError::new(format!("unterminated ${{...}} in config value {text:?}"))
            })?;
            let name = &open[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ConfigError::new(format!(
                    "invalid variable name {name:?} in ${{...}}; use letters, digits and _"
                )));
            }
            let value = env(name).ok_or_else(|| {
                ConfigError::new(format!(
                    "environment variable {name} is referenced in the config but not set; export it or remove the reference"
                ))
            })?;
            out.push_str(&value);
            rest = &open[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}
