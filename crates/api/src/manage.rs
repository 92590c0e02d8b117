//! SIP user management, as the admin API's user paths do it. The running core
//! picks up a change at once (the API hands it the reloaded user table) and
//! disabled or removed users lose their registrations.

use std::sync::Arc;

use auth::secret::{DigestSecrets, SecretKey};
use store::{NewUser, Store};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted, in characters.
pub const MAX_PASSWORD_LEN: usize = 1024;
/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 128;

/// One user of a bulk import.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportUser {
    pub uri: String,
    pub password: String,
    pub display_name: Option<String>,
}

/// Checks a display name: one line, bounded.
pub fn check_display_name(d: &str) -> Result<(), String> {
    if d.chars().count() > MAX_DISPLAY_NAME || d.chars().any(char::is_control) {
        return Err(format!(
            "the display name must be one line of at most {MAX_DISPLAY_NAME} characters"
        ));
    }
    Ok(())
}

/// User management over a store handle (an audited one for changes).
#[derive(Debug, Clone)]
pub struct Manager<S> {
    store: S,
    seal: Arc<SecretKey>,
    realm: String,
}

/// A user as listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UserInfo {
    pub uri: String,
    pub display_name: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
}

impl<S: Store> Manager<S> {
    pub fn new(store: S, seal: Arc<SecretKey>, realm: String) -> Manager<S> {
        Manager { store, seal, realm }
    }

    /// The same manager writing through `store` (e.g. an audited handle).
    pub fn with_store(&self, store: S) -> Manager<S> {
        Manager {
            store,
            ..self.clone()
        }
    }

    /// Checks a user URI and returns (AOR, user part).
    /// The domain users live in.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn parse_uri(&self, uri: &str) -> Result<(String, String), String> {
        let parsed = sip::Uri::parse(uri).map_err(|_| {
            format!(
                "{uri:?} is not a SIP URI; write it as sip:alice@{}",
                self.realm
            )
        })?;
        let sip::Uri::Sip(u) = parsed else {
            return Err(format!(
                "{uri:?} is not a sip: URI; write it as sip:alice@{}",
                self.realm
            ));
        };
        let user = u.user.ok_or_else(|| {
            format!(
                "{uri:?} has no user part; write it as sip:alice@{}",
                self.realm
            )
        })?;
        if !u.host.to_string().eq_ignore_ascii_case(&self.realm) {
            return Err(format!(
                "{uri:?} is not in this server's domain {}; write it as sip:{user}@{}",
                self.realm, self.realm
            ));
        }
        let user_ok = (1..=64).contains(&user.len())
            && user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '~' || c == '-');
        if !user_ok {
            return Err(format!(
                "{uri:?}: a user name is 1-64 letters, digits, '_', '~' or '-'; for example sip:alice@{}",
                self.realm
            ));
        }
        if u.port.is_some() || !u.params.is_empty() || u.headers.is_some() || u.password.is_some() {
            return Err(format!("{uri:?}: an address of record has no port, parameters or headers; write sip:{user}@{}", self.realm));
        }
        Ok((format!("sip:{user}@{}", self.realm), user.to_owned()))
    }

    fn seal(&self, aor: &str, user: &str, password: &str) -> Result<Vec<u8>, String> {
        let n = password.chars().count();
        if n < MIN_PASSWORD_LEN {
            return Err(format!(
                "the password for {aor} is too short: use at least {MIN_PASSWORD_LEN} characters"
            ));
        }
        if n > MAX_PASSWORD_LEN {
            return Err(format!(
                "the password for {aor} is too long: use at most {MAX_PASSWORD_LEN} characters"
            ));
        }
        let s = DigestSecrets::from_password(user, &self.realm, password);
        self.seal
            .seal(aor, &s)
            .map_err(|_| "could not seal the secret (random generator failed)".to_string())
    }

    pub async fn add(
        &self,
        uri: &str,
        display_name: Option<String>,
        password: &str,
    ) -> Result<String, String> {
        let (aor, user) = self.parse_uri(uri)?;
        let secret = self.seal(&aor, &user, password)?;
        let new = NewUser {
            aor: aor.clone(),
            display_name,
            secret,
            created_at: sip_app::unix_now(),
        };
        match self.store.add_user(new).await {
            Ok(_) => Ok(aor),
            Err(store::StoreError::Conflict(_)) => Err(format!(
                "{aor} already exists; use `parapet admin user passwd {aor}` to change its password"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    pub async fn passwd(&self, uri: &str, password: &str) -> Result<String, String> {
        let (aor, user) = self.parse_uri(uri)?;
        let secret = self.seal(&aor, &user, password)?;
        self.found(&aor, self.store.set_secret(&aor, secret).await)
    }

    pub async fn set_enabled(&self, uri: &str, enabled: bool) -> Result<String, String> {
        let (aor, _) = self.parse_uri(uri)?;
        self.found(&aor, self.store.set_enabled(&aor, enabled).await)
    }

    pub async fn remove(&self, uri: &str) -> Result<String, String> {
        let (aor, _) = self.parse_uri(uri)?;
        self.found(&aor, self.store.remove_user(&aor).await)
    }

    fn found(&self, aor: &str, r: store::Result<bool>) -> Result<String, String> {
        match r {
            Ok(true) => Ok(aor.to_owned()),
            Ok(false) => Err(format!("no user {aor}; see `parapet admin user list`")),
            Err(e) => Err(e.to_string()),
        }
    }

    pub async fn list(&self) -> Result<Vec<UserInfo>, String> {
        let users = self.store.list_users().await.map_err(|e| e.to_string())?;
        Ok(users
            .into_iter()
            .map(|u| UserInfo {
                uri: u.aor,
                display_name: u.display_name,
                enabled: u.enabled,
                created_at: u.created_at,
            })
            .collect())
    }

    /// Imports users, all or nothing. Errors name the entry (1-based).
    pub async fn import(&self, list: Vec<ImportUser>) -> Result<usize, String> {
        let now = sip_app::unix_now();
        let mut users = Vec::with_capacity(list.len());
        for (i, u) in list.into_iter().enumerate() {
            let n = i + 1;
            let (aor, user) = self
                .parse_uri(&u.uri)
                .map_err(|e| format!("user {n}: {e}"))?;
            if let Some(d) = &u.display_name {
                check_display_name(d).map_err(|e| format!("user {n}: {e}"))?;
            }
            let secret = self
                .seal(&aor, &user, &u.password)
                .map_err(|e| format!("user {n}: {e}"))?;
            users.push(NewUser {
                aor,
                display_name: u.display_name.filter(|d| !d.is_empty()),
                secret,
                created_at: now,
            });
        }
        match self.store.import_users(users).await {
            Ok(n) => Ok(n),
            Err(store::StoreError::Conflict(m)) => Err(format!(
                "import refused, nothing was added: a user already exists or appears twice ({m})"
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}
