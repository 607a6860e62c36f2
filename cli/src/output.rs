//! What goes to stdout: a node's answer as one line of JSON, optionally
//! behind its HTTP status.

use serde_json::Value;

/// One line of JSON with a space after each `:` and `,`, as in
/// `{"key": "hello", "value": "world"}`. Non-ASCII text is printed as is.
pub fn json_line(value: &Value) -> String {
    let mut out = String::new();
    write_json(&mut out, value);
    out
}

fn write_json(out: &mut String, value: &Value) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (at, item) in items.iter().enumerate() {
                if at > 0 {
                    out.push_str(", ");
                }
                write_json(out, item);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (at, (name, member)) in members.iter().enumerate() {
                if at > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::from(name.as_str()).to_string());
                out.push_str(": ");
                write_json(out, member);
            }
            out.push('}');
        }
        // Scalars print as compact JSON already, strings with their escapes.
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// A response body for printing: JSON is reformatted by [`json_line`], anything
/// else is shown as received, without trailing blank lines.
pub fn body_text(body: &str) -> String {
    match serde_json::from_str::<Value>(body) {
        Ok(value) => json_line(&value),
        Err(_) => body.trim_end().to_string(),
    }
}

/// Puts the status in front of `text` when `--status` asks for it: on the same
/// line for one line of text, on a line of its own above a multi-line drawing.
pub fn with_status(status: Option<u16>, text: &str) -> String {
    match status {
        None => text.to_string(),
        Some(status) if text.is_empty() => status.to_string(),
        Some(status) if text.contains('\n') => format!("{status}\n{text}"),
        Some(status) => format!("{status} {text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_one_line_with_spaces_after_separators() {
        assert_eq!(
            json_line(&json!({"key": "hello", "value": "world"})),
            r#"{"key": "hello", "value": "world"}"#
        );
        assert_eq!(
            json_line(&json!({"key": "k", "value": {"a": [1, 2.5, null, true, {}], "b": []}})),
            r#"{"key": "k", "value": {"a": [1, 2.5, null, true, {}], "b": []}}"#
        );
        assert_eq!(json_line(&json!("multi\nline")), r#""multi\nline""#);
        assert_eq!(json_line(&json!("grüße")), r#""grüße""#);
    }

    #[test]
    fn bodies_that_are_not_json_are_shown_as_received() {
        assert_eq!(body_text("{\"key\":\"k\"}\n"), r#"{"key": "k"}"#);
        assert_eq!(body_text("Method Not Allowed\n\n"), "Method Not Allowed");
        assert_eq!(body_text(""), "");
    }

    #[test]
    fn the_status_goes_in_front() {
        assert_eq!(with_status(None, "{}"), "{}");
        assert_eq!(
            with_status(Some(200), r#"{"key": "hello", "value": "world"}"#),
            r#"200 {"key": "hello", "value": "world"}"#
        );
        assert_eq!(with_status(Some(405), ""), "405");
        assert_eq!(with_status(Some(200), "a\nb"), "200\na\nb");
    }
}
