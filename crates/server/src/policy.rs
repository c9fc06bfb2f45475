//! The login settings of an app and the decision they make when an instance logs in: which
//! existing instances must go, and why. Pure (no registry, no clock) so that every policy ×
//! platform × limit combination is tested as a table.
//!
//! The rules (`shared/REFERENCE.md`, "Login settings"):
//! - the multi-platform policy decides which *other* platforms may stay online beside the new
//!   one; each that may not is kicked with `multipleDevice`;
//! - then, on the new instance's own platform, while the instances there would exceed the
//!   platform's limit, the one that logged in **earliest** is kicked with `multipleAccount`.

use std::fmt;
use std::str::FromStr;

use tim_proto::{KickReason, Platform};

/// Tencent console's "multi-platform login" setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginPolicy {
    /// Only one of Android / iPhone / iPad / Windows / Mac / Web online.
    Single,
    /// One mobile-or-desktop device, plus Web.
    Dual,
    /// One mobile (Android / iPhone / iPad), one desktop (Windows / Mac), plus Web.
    Triple,
    /// All platforms at once.
    All,
}

impl LoginPolicy {
    /// Whether an instance on `existing` must go when one on `new` (another platform) logs in.
    pub fn conflicts(self, existing: Platform, new: Platform) -> bool {
        if existing == new {
            return false; // same platform: the instance limit decides
        }
        match self {
            LoginPolicy::Single => true,
            LoginPolicy::Dual => existing != Platform::Web && new != Platform::Web,
            LoginPolicy::Triple => {
                (existing.is_mobile() && new.is_mobile())
                    || (existing.is_desktop() && new.is_desktop())
            }
            LoginPolicy::All => false,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            LoginPolicy::Single => "single",
            LoginPolicy::Dual => "dual",
            LoginPolicy::Triple => "triple",
            LoginPolicy::All => "all",
        }
    }
}

impl fmt::Display for LoginPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LoginPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "single" => Ok(LoginPolicy::Single),
            "dual" => Ok(LoginPolicy::Dual),
            "triple" => Ok(LoginPolicy::Triple),
            "all" => Ok(LoginPolicy::All),
            _ => Err(format!(
                "unknown login policy {s:?}: expected single, dual, triple or all"
            )),
        }
    }
}

pub const WEB_INSTANCES_MAX: u8 = 10;
pub const PLATFORM_INSTANCES_MAX: u8 = 3;

/// One app's login settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginSettings {
    /// Online Web instances, 1..=10.
    pub web_instances: u8,
    /// Instances per other platform (Android, iPhone, iPad, Windows, Mac), 1..=3.
    pub platform_instances: u8,
    pub policy: LoginPolicy,
}

impl Default for LoginSettings {
    /// Tencent's defaults: one instance per platform; one mobile-or-desktop device plus Web.
    fn default() -> Self {
        LoginSettings {
            web_instances: 1,
            platform_instances: 1,
            policy: LoginPolicy::Dual,
        }
    }
}

impl LoginSettings {
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=WEB_INSTANCES_MAX).contains(&self.web_instances) {
            return Err(format!(
                "--web-instances must be 1..={WEB_INSTANCES_MAX}, got {}",
                self.web_instances
            ));
        }
        if !(1..=PLATFORM_INSTANCES_MAX).contains(&self.platform_instances) {
            return Err(format!(
                "--platform-instances must be 1..={PLATFORM_INSTANCES_MAX}, got {}",
                self.platform_instances
            ));
        }
        Ok(())
    }

    pub fn limit(&self, platform: Platform) -> usize {
        usize::from(match platform {
            Platform::Web => self.web_instances,
            _ => self.platform_instances,
        })
    }

    /// Which of `existing` (a user's other online instances, earliest login first) must be
    /// kicked for a new instance on `new` to log in, as `(index into existing, reason)`.
    pub fn evictions(&self, existing: &[Platform], new: Platform) -> Vec<(usize, KickReason)> {
        let mut out: Vec<(usize, KickReason)> = existing
            .iter()
            .enumerate()
            .filter(|(_, p)| self.policy.conflicts(**p, new))
            .map(|(i, _)| (i, KickReason::MultipleDevice))
            .collect();
        let same: Vec<usize> = (0..existing.len())
            .filter(|&i| existing[i] == new)
            .collect();
        // Room for the newcomer: keep at most limit - 1 of the others, dropping the earliest.
        let excess = (same.len() + 1).saturating_sub(self.limit(new));
        out.extend(
            same.into_iter()
                .take(excess)
                .map(|i| (i, KickReason::MultipleAccount)),
        );
        out
    }

    /// Which of a user's instances (`platforms`, earliest login first) these settings no
    /// longer allow, as `(index, reason)` (an `ApplyNow` change): the latest logins stay,
    /// as if each had logged in in turn under these settings — an earlier instance that
    /// conflicts with a later one's platform goes with `multipleDevice`, and beyond a
    /// platform's limit the earliest go with `multipleAccount`.
    pub fn over_limits(&self, platforms: &[Platform]) -> Vec<(usize, KickReason)> {
        let mut kept: Vec<Platform> = Vec::new();
        let mut out = Vec::new();
        for (i, &p) in platforms.iter().enumerate().rev() {
            if kept.iter().any(|&k| self.policy.conflicts(p, k)) {
                out.push((i, KickReason::MultipleDevice));
            } else if kept.iter().filter(|&&k| k == p).count() >= self.limit(p) {
                out.push((i, KickReason::MultipleAccount));
            } else {
                kept.push(p);
            }
        }
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Platform::*;

    fn settings(web: u8, other: u8, policy: LoginPolicy) -> LoginSettings {
        LoginSettings {
            web_instances: web,
            platform_instances: other,
            policy,
        }
    }

    #[test]
    fn over_limits_keeps_the_latest_and_names_what_a_login_would() {
        // Web limit lowered from 3 to 1: the two earliest tabs go.
        let s = settings(1, 1, LoginPolicy::Dual);
        assert_eq!(
            s.over_limits(&[Web, Web, Web]),
            [
                (0, KickReason::MultipleAccount),
                (1, KickReason::MultipleAccount)
            ]
        );
        // Dual: a phone and a PC conflict; the earlier (the phone) goes, the tab stays.
        assert_eq!(
            s.over_limits(&[Android, Web, Windows]),
            [(0, KickReason::MultipleDevice)]
        );
        // Within the limits: nothing.
        assert!(settings(2, 1, LoginPolicy::All)
            .over_limits(&[Web, Android, Web, Mac])
            .is_empty());
        // Single: only the latest platform stays, and within it the limit.
        assert_eq!(
            settings(1, 1, LoginPolicy::Single).over_limits(&[Web, Mac, Web]),
            [
                (0, KickReason::MultipleAccount),
                (1, KickReason::MultipleDevice)
            ]
        );
    }

    /// Expected conflicts, written out by hand from the console's wording.
    #[test]
    fn every_policy_and_platform_pair() {
        let all = Platform::ALL;
        for existing in all {
            for new in all {
                let different = existing != new;
                let web = existing == Web || new == Web;
                let mobile = |p: Platform| matches!(p, Android | IPhone | IPad);
                let desktop = |p: Platform| matches!(p, Windows | Mac);
                let expect = [
                    (LoginPolicy::Single, different),
                    (LoginPolicy::Dual, different && !web),
                    (
                        LoginPolicy::Triple,
                        different
                            && ((mobile(existing) && mobile(new))
                                || (desktop(existing) && desktop(new))),
                    ),
                    (LoginPolicy::All, false),
                ];
                for (policy, conflict) in expect {
                    assert_eq!(
                        policy.conflicts(existing, new),
                        conflict,
                        "{policy} {existing:?} then {new:?}"
                    );
                    let kicked = settings(10, 3, policy).evictions(&[existing], new);
                    let want = if conflict {
                        vec![(0, KickReason::MultipleDevice)]
                    } else {
                        vec![]
                    };
                    assert_eq!(kicked, want, "{policy} {existing:?} then {new:?}");
                }
            }
        }
    }

    #[test]
    fn over_the_limit_the_earliest_on_that_platform_goes() {
        for policy in [
            LoginPolicy::Single,
            LoginPolicy::Dual,
            LoginPolicy::Triple,
            LoginPolicy::All,
        ] {
            for (platform, max) in [(Web, 10), (Android, 3), (Mac, 3)] {
                for limit in 1..=max {
                    let s = if platform == Web {
                        settings(limit, 1, policy)
                    } else {
                        settings(1, limit, policy)
                    };
                    // Below the limit nobody goes; at it, exactly the earliest goes.
                    for n in 0..usize::from(limit) {
                        let existing = vec![platform; n];
                        assert_eq!(
                            s.evictions(&existing, platform),
                            vec![],
                            "{policy} {platform:?} {limit} {n}"
                        );
                    }
                    let existing = vec![platform; usize::from(limit)];
                    assert_eq!(
                        s.evictions(&existing, platform),
                        vec![(0, KickReason::MultipleAccount)],
                        "{policy} {platform:?} limit {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn limits_lowered_since_evict_down_to_room_for_one() {
        let s = settings(2, 1, LoginPolicy::All);
        let existing = [Web, Web, Web, Web];
        let kicked = s.evictions(&existing, Web);
        assert_eq!(
            kicked,
            vec![
                (0, KickReason::MultipleAccount),
                (1, KickReason::MultipleAccount),
                (2, KickReason::MultipleAccount)
            ]
        );
    }

    #[test]
    fn other_platforms_are_untouched_by_a_limit() {
        let s = settings(1, 1, LoginPolicy::All);
        let existing = [Android, Web, Mac, IPhone];
        assert_eq!(
            s.evictions(&existing, Web),
            vec![(1, KickReason::MultipleAccount)]
        );
    }

    #[test]
    fn policy_and_limit_together() {
        // dual: Web x2 limit 2, Android online; a new iPhone kicks Android (device) only.
        let s = settings(2, 1, LoginPolicy::Dual);
        assert_eq!(
            s.evictions(&[Web, Android, Web], IPhone),
            vec![(1, KickReason::MultipleDevice)]
        );
        // single: a new Web login kicks every other platform, and the earliest Web over the limit.
        let s = settings(1, 1, LoginPolicy::Single);
        assert_eq!(
            s.evictions(&[Android, Web, Mac], Web),
            vec![
                (0, KickReason::MultipleDevice),
                (2, KickReason::MultipleDevice),
                (1, KickReason::MultipleAccount)
            ]
        );
    }

    #[test]
    fn settings_are_validated() {
        assert!(LoginSettings::default().validate().is_ok());
        assert_eq!(LoginSettings::default().policy, LoginPolicy::Dual);
        for (web, other, ok) in [
            (0, 1, false),
            (11, 1, false),
            (10, 3, true),
            (1, 0, false),
            (1, 4, false),
        ] {
            assert_eq!(
                settings(web, other, LoginPolicy::All).validate().is_ok(),
                ok,
                "{web} {other}"
            );
        }
        assert_eq!("TRIPLE".parse::<LoginPolicy>(), Ok(LoginPolicy::Triple));
        assert!("both".parse::<LoginPolicy>().is_err());
    }
}
