//! The in-memory user table the authentication hot path reads. It is loaded
//! from the store at start and reloaded whenever the store's users version moves
//! (the CLI added, changed or removed a user while the server runs).

use std::collections::HashMap;

use auth::secret::{DigestSecrets, SecretKey};
use store::Users;

/// What authentication needs of a user.
#[derive(Debug, Clone)]
pub struct CachedUser {
    pub enabled: bool,
    pub secrets: DigestSecrets,
}

/// Users by address of record.
#[derive(Debug, Default)]
pub struct UserCache {
    pub(crate) by_aor: HashMap<String, CachedUser>,
    pub(crate) version: i64,
}

impl UserCache {
    /// The users' version (`Users::users_version`) this table was loaded at.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// Loads every user. Secrets that do not open (a damaged row, or a key
    /// mismatch) leave that user unable to sign in, and are logged.
    pub async fn load(store: &impl Users, key: &SecretKey) -> Result<UserCache, String> {
        let version = store.users_version().await.map_err(|e| e.to_string())?;
        let users = store.list_users().await.map_err(|e| e.to_string())?;
        let mut by_aor = HashMap::with_capacity(users.len());
        for u in users {
            match key.open(&u.aor, &u.secret) {
                Ok(secrets) => {
                    by_aor.insert(
                        u.aor,
                        CachedUser {
                            enabled: u.enabled,
                            secrets,
                        },
                    );
                }
                Err(_) => {
                    tracing::error!(aor = %u.aor, "stored secret does not open with this data directory's key; the user cannot sign in until `parapet user passwd`")
                }
            }
        }
        Ok(UserCache { by_aor, version })
    }

    /// One user as stored now (`None`: removed), with the users version read
    /// first (so it is at least the version of the change being published).
    /// Secrets that do not open leave the user unable to sign in, as in
    /// [`UserCache::load`].
    pub async fn load_one(
        store: &impl Users,
        key: &SecretKey,
        aor: &str,
    ) -> Result<(i64, Option<CachedUser>), String> {
        let version = store.users_version().await.map_err(|e| e.to_string())?;
        let u = store.user(aor).await.map_err(|e| e.to_string())?;
        Ok((version, u.and_then(|u| match key.open(&u.aor, &u.secret) {
            Ok(secrets) => Some(CachedUser {
                enabled: u.enabled,
                secrets,
            }),
            Err(_) => {
                tracing::error!(aor = %u.aor, "stored secret does not open with this data directory's key");
                None
            }
        })))
    }

    /// Replaces (or with `None` removes) one user's entry, read at store
    /// version `version`. Every user change goes through the admin API, which
    /// publishes each one, so the table is then current as of `version`; a
    /// full reload read earlier (the periodic check) is no longer installed
    /// over it.
    pub(crate) fn set(&mut self, version: i64, aor: &str, user: Option<CachedUser>) {
        self.version = self.version.max(version);
        match user {
            Some(u) => {
                self.by_aor.insert(aor.to_string(), u);
            }
            None => {
                self.by_aor.remove(aor);
            }
        }
    }

    pub fn get(&self, aor: &str) -> Option<&CachedUser> {
        self.by_aor.get(aor)
    }

    pub fn len(&self) -> usize {
        self.by_aor.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_aor.is_empty()
    }
}
