//! The JSON half of a REST call: the body, size-bounded and parsed, and typed access to its
//! fields with the documented codes — a missing field or a bad value is a 70402, an account
//! field (UserID, or a list of them) of the wrong JSON type a 60015.

use axum::body::Body;
use serde_json::{Map, Value};

use super::auth::echo;
use super::error::RestError;

/// Largest body accepted: 500 accounts of 32 bytes, quoted, fit many times over.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A JSON object body.
pub type Object = Map<String, Value>;

/// Reads the body (at most [`MAX_BODY_BYTES`]) and parses it as a JSON object.
pub async fn read_object(body: Body) -> Result<Object, RestError> {
    // An error here is either the size bound or a broken connection, whose caller will
    // never read the answer anyway.
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            RestError::invalid(format!(
                "the request body is larger than {MAX_BODY_BYTES} bytes"
            ))
        })?;
    parse_object(&bytes)
}

/// Parses `bytes` as a JSON object: 60003 if it is not JSON at all, 70402 if it is JSON but
/// not an object.
pub fn parse_object(bytes: &[u8]) -> Result<Object, RestError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(RestError::invalid("the request body must be a JSON object")),
        Err(e) => Err(RestError::BadJson(e.to_string())),
    }
}

/// The UserID of `object`, under `UserID` or (older clients) `Identifier`, checked to be
/// a valid UserID. `at` names the object in messages (`""` for the body itself).
pub fn user_id(object: &Object, at: &str) -> Result<String, RestError> {
    let id = user_id_text(object, at)?;
    check_user_id(&id)?;
    Ok(id)
}

/// The UserID string of `object` (`UserID` or `Identifier`), type-checked but not
/// validated: batch APIs report an invalid UserID per item instead of failing the call.
pub fn user_id_text(object: &Object, at: &str) -> Result<String, RestError> {
    let field = |name: &str| match object.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(RestError::WrongType(format!("{at}{name}"), "a string")),
    };
    match (field("UserID")?, field("Identifier")?) {
        (Some(a), Some(b)) if a != b => Err(RestError::invalid(format!(
            "{at}UserID and {at}Identifier differ: send one of them"
        ))),
        (Some(id), _) | (None, Some(id)) => Ok(id),
        (None, None) => Err(RestError::invalid(format!("{at}UserID is required"))),
    }
}

/// 70402 unless `id` is 1 to 32 bytes of `A-Z a-z 0-9 _ -`.
pub fn check_user_id(id: &str) -> Result<(), RestError> {
    if tim_proto::is_valid_user_id(id) {
        Ok(())
    } else {
        Err(RestError::invalid(format!(
            "UserID {} is not valid: it must be 1 to 32 bytes of A-Z a-z 0-9 _ -",
            echo(id)
        )))
    }
}

/// The array `object[name]`: required, non-empty, at most `max` items.
fn array<'a>(
    object: &'a Object,
    name: &str,
    max: usize,
    expected: &'static str,
) -> Result<&'a Vec<Value>, RestError> {
    match object.get(name) {
        None => Err(RestError::invalid(format!("{name} is required"))),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(RestError::invalid(format!("{name} is empty")))
        }
        Some(Value::Array(items)) if items.len() > max => Err(RestError::invalid(format!(
            "{name} has {} items; at most {max} are allowed per call",
            items.len()
        ))),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(RestError::WrongType(name.to_owned(), expected)),
    }
}

/// `object[name]` as a list of account strings (`Accounts`, `To_Account`), not validated.
pub fn string_list(object: &Object, name: &str, max: usize) -> Result<Vec<String>, RestError> {
    array(object, name, max, "an array of strings")?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(RestError::WrongType(format!("{name}[{i}]"), "a string")),
        })
        .collect()
}

/// The UserID strings of `object[name]`, a list of `{ "UserID": … }` objects
/// (`DeleteItem`, `CheckItem`), not validated.
pub fn item_user_ids(object: &Object, name: &str, max: usize) -> Result<Vec<String>, RestError> {
    array(object, name, max, "an array of objects")?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(item) => user_id_text(item, &format!("{name}[{i}].")),
            _ => Err(RestError::WrongType(format!("{name}[{i}]"), "an object")),
        })
        .collect()
}

/// An optional string field (e.g. `Nick`): 70402 if present and not a string.
pub fn optional_string<'a>(object: &'a Object, name: &str) -> Result<Option<&'a str>, RestError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(RestError::invalid(format!("{name} must be a string"))),
    }
}

/// An optional 0/1 flag (e.g. `IsNeedDetail`), false when absent.
pub fn optional_flag(object: &Object, name: &str) -> Result<bool, RestError> {
    match object.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(v) if v.as_u64() == Some(0) => Ok(false),
        Some(v) if v.as_u64() == Some(1) => Ok(true),
        Some(_) => Err(RestError::invalid(format!("{name} must be 0 or 1"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => panic!("not an object"),
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, RestError>) -> u32 {
        r.unwrap_err().code()
    }

    #[test]
    fn body_must_be_a_json_object() {
        assert!(parse_object(br#"{"UserID":"a"}"#).is_ok());
        assert_eq!(code(parse_object(b"")), 60003);
        assert_eq!(code(parse_object(b"{")), 60003);
        assert_eq!(code(parse_object(b"{\"a\":\"\xff\"}")), 60003);
        assert_eq!(code(parse_object(b"[1]")), 70402);
        assert_eq!(code(parse_object(b"\"x\"")), 70402);
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(code(parse_object(deep.as_bytes())), 60003);
    }

    #[test]
    fn user_id_accepts_both_names_and_checks_type_and_value() {
        assert_eq!(user_id(&obj(json!({"UserID": "a"})), "").unwrap(), "a");
        assert_eq!(user_id(&obj(json!({"Identifier": "b"})), "").unwrap(), "b");
        assert_eq!(
            user_id(&obj(json!({"UserID": "c", "Identifier": "c"})), "").unwrap(),
            "c"
        );
        assert_eq!(
            code(user_id(&obj(json!({"UserID": "c", "Identifier": "d"})), "")),
            70402
        );
        assert_eq!(code(user_id(&obj(json!({})), "")), 70402);
        assert_eq!(code(user_id(&obj(json!({"UserID": 5})), "")), 60015);
        assert_eq!(code(user_id(&obj(json!({"Identifier": ["a"]})), "")), 60015);
        assert_eq!(code(user_id(&obj(json!({"UserID": "a b"})), "")), 70402);
        assert_eq!(code(user_id(&obj(json!({"UserID": ""})), "")), 70402);
        assert_eq!(
            code(user_id(&obj(json!({"UserID": "x".repeat(33)})), "")),
            70402
        );
        let e = user_id(&obj(json!({"UserID": 1})), "DeleteItem[3].").unwrap_err();
        assert!(e.to_string().contains("DeleteItem[3].UserID"), "{e}");
    }

    #[test]
    fn lists_are_typed_non_empty_and_bounded() {
        let o = obj(json!({"Accounts": ["a", "b c"], "Empty": [], "S": "a", "N": [1]}));
        assert_eq!(string_list(&o, "Accounts", 2).unwrap(), ["a", "b c"]);
        assert_eq!(code(string_list(&o, "Accounts", 1)), 70402);
        assert_eq!(code(string_list(&o, "Missing", 5)), 70402);
        assert_eq!(code(string_list(&o, "Empty", 5)), 70402);
        assert_eq!(code(string_list(&o, "S", 5)), 60015);
        assert_eq!(code(string_list(&o, "N", 5)), 60015);

        let o = obj(json!({
            "DeleteItem": [{"UserID": "a"}, {"Identifier": "b"}],
            "Bad": ["a"],
            "BadId": [{"UserID": 1}],
            "NoId": [{"Nick": "x"}],
        }));
        assert_eq!(item_user_ids(&o, "DeleteItem", 100).unwrap(), ["a", "b"]);
        assert_eq!(code(item_user_ids(&o, "DeleteItem", 1)), 70402);
        assert_eq!(code(item_user_ids(&o, "Bad", 100)), 60015);
        assert_eq!(code(item_user_ids(&o, "BadId", 100)), 60015);
        assert_eq!(code(item_user_ids(&o, "NoId", 100)), 70402);
    }

    #[test]
    fn optional_fields() {
        let o = obj(json!({"Nick": "n", "Face": 3, "D0": 0, "D1": 1, "D2": 2, "Ds": "1"}));
        assert_eq!(optional_string(&o, "Nick").unwrap(), Some("n"));
        assert_eq!(optional_string(&o, "Missing").unwrap(), None);
        assert_eq!(code(optional_string(&o, "Face")), 70402);
        assert!(!optional_flag(&o, "Missing").unwrap());
        assert!(!optional_flag(&o, "D0").unwrap());
        assert!(optional_flag(&o, "D1").unwrap());
        assert_eq!(code(optional_flag(&o, "D2")), 70402);
        assert_eq!(code(optional_flag(&o, "Ds")), 70402);
    }
}
