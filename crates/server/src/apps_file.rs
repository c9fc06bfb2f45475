//! The apps file (`--apps FILE`, `TIMD_APPS`): one `[[app]]` table per app served.
//!
//! ```toml
//! [[app]]
//! sdkappid = 1400000001
//! key_file = "/etc/timd/app1.key"   # or key_env = "APP1_KEY" (never the key itself)
//! admins = ["administrator", "ops"] # 1..10 UserIDs; default ["administrator"]
//! web_instances = 2                 # first login settings (then set_login_settings)
//! platform_instances = 1
//! login_policy = "dual"             # single | dual | triple | all
//! rest_rate_limit = 200             # REST calls per second; 0 = unlimited
//! callback_url = "http://10.0.0.5:8080/im"   # State.StateChange callbacks (optional)
//! callback_token_file = "/etc/timd/app1.cb"  # or callback_token_env = "APP1_CB_TOKEN"
//! ```
//!
//! A bad file is refused at start with the file, the app and the field named.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::apps::{AppConfig, MAX_ADMINS, MAX_APPS};
use crate::cli::resolve_key;
use crate::config::{DEFAULT_ADMIN, DEFAULT_REST_RATE_LIMIT};
use crate::policy::{LoginPolicy, LoginSettings, PLATFORM_INSTANCES_MAX, WEB_INSTANCES_MAX};

/// Why an apps file cannot be used: the file, which app (its place and SDKAppID when
/// known), the field, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("apps file {}: {where_}: {message}", path.display())]
pub struct AppsFileError {
    pub path: PathBuf,
    pub where_: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    app: Option<Vec<Entry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    sdkappid: Option<i64>,
    key_file: Option<PathBuf>,
    key_env: Option<String>,
    admins: Option<Vec<String>>,
    web_instances: Option<i64>,
    platform_instances: Option<i64>,
    login_policy: Option<String>,
    rest_rate_limit: Option<i64>,
    callback_url: Option<String>,
    callback_token_file: Option<PathBuf>,
    callback_token_env: Option<String>,
}

/// Reads and checks the apps file at `path`. Relative `key_file`s are relative to the
/// file's own directory.
pub fn load(path: &Path) -> Result<Vec<AppConfig>, AppsFileError> {
    let err = |where_: &str, message: String| AppsFileError {
        path: path.to_owned(),
        where_: where_.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err("file", e.to_string()))?;
    let file: File = toml::from_str(&text).map_err(|e| err("syntax", e.to_string()))?;
    let entries = file.app.unwrap_or_default();
    if entries.is_empty() {
        return Err(err(
            "file",
            "no [[app]] table: name at least one app".into(),
        ));
    }
    if entries.len() > MAX_APPS {
        return Err(err(
            "file",
            format!("{} apps; at most {MAX_APPS}", entries.len()),
        ));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut apps: Vec<AppConfig> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let mut where_ = format!("app #{}", i + 1);
        let sdkappid = match entry.sdkappid {
            Some(id) if (1..=i64::from(u32::MAX)).contains(&id) => id as u32,
            Some(id) => {
                return Err(err(
                    &format!("{where_}, field sdkappid"),
                    format!("{id} is not an SDKAppID (1 to 4294967295)"),
                ))
            }
            None => return Err(err(&where_, "field sdkappid is missing".into())),
        };
        where_ = format!("app #{} (sdkappid {sdkappid})", i + 1);
        if apps.iter().any(|a| a.sdkappid == sdkappid) {
            return Err(err(&where_, "this sdkappid is listed twice".into()));
        }
        let key = match (entry.key_file, entry.key_env) {
            (Some(file), None) => {
                let file = if file.is_relative() {
                    dir.join(file)
                } else {
                    file
                };
                resolve_key(None, Some(&file))
                    .map_err(|e| err(&format!("{where_}, field key_file"), e.to_string()))?
                    .unwrap_or_default()
            }
            (None, Some(var)) => std::env::var(&var).map_err(|_| {
                err(
                    &format!("{where_}, field key_env"),
                    format!("the environment variable {var} is not set (or not UTF-8)"),
                )
            })?,
            (Some(_), Some(_)) => {
                return Err(err(&where_, "give key_file or key_env, not both".into()))
            }
            (None, None) => {
                return Err(err(
                    &where_,
                    "the app's key is missing: key_file = PATH or key_env = VARIABLE".into(),
                ))
            }
        };
        if key.is_empty() {
            return Err(err(&format!("{where_}, key"), "the key is empty".into()));
        }
        let admins = entry
            .admins
            .unwrap_or_else(|| vec![DEFAULT_ADMIN.to_owned()]);
        if admins.is_empty() || admins.len() > MAX_ADMINS {
            return Err(err(
                &format!("{where_}, field admins"),
                format!("{} admins; give 1 to {MAX_ADMINS}", admins.len()),
            ));
        }
        if let Some(bad) = admins.iter().find(|a| !tim_proto::is_valid_user_id(a)) {
            return Err(err(
                &format!("{where_}, field admins"),
                format!("{bad:?} is not a UserID (1..32 of A-Z a-z 0-9 _ -)"),
            ));
        }
        let defaults = LoginSettings::default();
        let number = |field: &str, v: Option<i64>, default: u8, max: u8| match v {
            None => Ok(default),
            Some(n) if (1..=i64::from(max)).contains(&n) => Ok(n as u8),
            Some(n) => Err(err(
                &format!("{where_}, field {field}"),
                format!("{n} is out of range 1..={max}"),
            )),
        };
        let login = LoginSettings {
            web_instances: number(
                "web_instances",
                entry.web_instances,
                defaults.web_instances,
                WEB_INSTANCES_MAX,
            )?,
            platform_instances: number(
                "platform_instances",
                entry.platform_instances,
                defaults.platform_instances,
                PLATFORM_INSTANCES_MAX,
            )?,
            policy: match entry.login_policy {
                None => defaults.policy,
                Some(p) => p
                    .parse::<LoginPolicy>()
                    .map_err(|e| err(&format!("{where_}, field login_policy"), e))?,
            },
        };
        let rest_rate_limit = match entry.rest_rate_limit {
            None => DEFAULT_REST_RATE_LIMIT,
            Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => n as u32,
            Some(n) => {
                return Err(err(
                    &format!("{where_}, field rest_rate_limit"),
                    format!("{n} is not a number of calls per second"),
                ))
            }
        };
        let token = match (entry.callback_token_file, entry.callback_token_env) {
            (Some(file), None) => {
                let file = if file.is_relative() {
                    dir.join(file)
                } else {
                    file
                };
                resolve_key(None, Some(&file)).map_err(|e| {
                    err(
                        &format!("{where_}, field callback_token_file"),
                        e.to_string(),
                    )
                })?
            }
            (None, Some(var)) => Some(std::env::var(&var).map_err(|_| {
                err(
                    &format!("{where_}, field callback_token_env"),
                    format!("the environment variable {var} is not set (or not UTF-8)"),
                )
            })?),
            (Some(_), Some(_)) => {
                return Err(err(
                    &where_,
                    "give callback_token_file or callback_token_env, not both".into(),
                ))
            }
            (None, None) => None,
        };
        let callback = match entry.callback_url {
            Some(url) => {
                let target = crate::callbacks::CallbackTarget { url, token };
                target
                    .validate()
                    .map_err(|e| err(&format!("{where_}, field callback_url"), e))?;
                Some(target)
            }
            None if token.is_some() => {
                return Err(err(&where_, "a callback token without callback_url".into()))
            }
            None => None,
        };
        apps.push(AppConfig {
            sdkappid,
            key,
            admins,
            login,
            rest_rate_limit,
            callback,
        });
    }
    Ok(apps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apps.toml");
        std::fs::write(&path, text).unwrap();
        std::fs::write(dir.path().join("a.key"), "key-of-a\n").unwrap();
        (dir, path)
    }

    #[test]
    fn two_apps_with_their_keys_admins_and_settings() {
        std::env::set_var("TIMD_TEST_APPS_FILE_KEY_B", "key-of-b");
        let (_dir, path) = write(
            r#"
            [[app]]
            sdkappid = 1400000001
            key_file = "a.key"
            admins = ["administrator", "ops"]
            web_instances = 2
            login_policy = "single"

            [[app]]
            sdkappid = 1400000002
            key_env = "TIMD_TEST_APPS_FILE_KEY_B"
            rest_rate_limit = 0
            callback_url = "http://127.0.0.1:8080/cb"
            callback_token_file = "a.key"
            "#,
        );
        let apps = load(&path).unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].key, "key-of-a");
        assert_eq!(apps[0].admins, ["administrator", "ops"]);
        assert_eq!(apps[0].login.web_instances, 2);
        assert_eq!(apps[0].login.policy, LoginPolicy::Single);
        assert_eq!(apps[0].rest_rate_limit, DEFAULT_REST_RATE_LIMIT);
        assert_eq!(apps[1].key, "key-of-b");
        assert_eq!(apps[1].admins, [DEFAULT_ADMIN]);
        assert_eq!(apps[1].login, LoginSettings::default());
        assert_eq!(apps[1].rest_rate_limit, 0);
        assert_eq!(apps[0].callback, None);
        let cb = apps[1].callback.as_ref().unwrap();
        assert_eq!(cb.url, "http://127.0.0.1:8080/cb");
        assert_eq!(cb.token.as_deref(), Some("key-of-a"));
    }

    #[test]
    fn bad_files_name_the_app_and_the_field() {
        let cases = [
            ("", "no [[app]]"),
            ("[[app]]\nkey_file = \"a.key\"", "field sdkappid is missing"),
            ("[[app]]\nsdkappid = 0\nkey_file = \"a.key\"", "field sdkappid"),
            ("[[app]]\nsdkappid = 7", "key is missing"),
            ("[[app]]\nsdkappid = 7\nkey_file = \"nope.key\"", "field key_file"),
            ("[[app]]\nsdkappid = 7\nkey_env = \"TIMD_TEST_NO_SUCH_VAR\"", "field key_env"),
            ("[[app]]\nsdkappid = 7\nkey_file = \"a.key\"\nweb_instances = 11", "(sdkappid 7), field web_instances"),
            ("[[app]]\nsdkappid = 7\nkey_file = \"a.key\"\nplatform_instances = 4", "field platform_instances"),
            ("[[app]]\nsdkappid = 7\nkey_file = \"a.key\"\nlogin_policy = \"quad\"", "field login_policy"),
            ("[[app]]\nsdkappid = 7\nkey_file = \"a.key\"\nadmins = []", "field admins"),
            ("[[app]]\nsdkappid = 7\nkey_file = \"a.key\"\nadmins = [\"a b\"]", "field admins"),
            ("[[app]]\nsdkappid = 7\nkey_file = \"a.key\"\n[[app]]\nsdkappid = 7\nkey_file = \"a.key\"", "app #2 (sdkappid 7): this sdkappid is listed twice"),
            ("[[app]]\nsdkappid = 7\nkey_file = \"a.key\"\ncolour = 1", "syntax"),
            ("[[app]]\nsdkappid = 7\nkey_file = \"a.key\"\ncallback_url = \"https://x/\"", "field callback_url"),
            ("[[app]]\nsdkappid = 7\nkey_file = \"a.key\"\ncallback_token_file = \"a.key\"", "without callback_url"),
            ("[[app]\n", "syntax"),
        ];
        for (text, want) in cases {
            let (_dir, path) = write(text);
            let e = load(&path).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(e.contains("apps.toml"), "{e}");
        }
    }
}
