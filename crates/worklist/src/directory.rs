//! Pools, users, passwords (argon2id) and login sessions.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;


use crate::{SiteId, PoolId, UserId, Error, PoolKind, Role, Seniority, User, Worklist};

/// A reading pool (e.g. county radiology, county ECG room).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Pool {
    pub id: PoolId,
    pub consortium_id: i64,
    pub name: String,
    pub kind: PoolKind,
}

/// A reader's qualifications (see [`Worklist::set_qualifications`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReaderQualifications {
    pub seniority: Seniority,
    pub supervisor: bool,
    pub modalities: Vec<String>,
    pub duty_hours: Option<String>,
}

impl From<&User> for ReaderQualifications {
    fn from(u: &User) -> Self {
        ReaderQualifications {
            seniority: u.seniority,
            supervisor: u.supervisor,
            modalities: u.modalities.clone(),
            duty_hours: u.duty_hours.clone(),
        }
    }
}

/// Pool settings that are switched on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolFlag {
    /// juniors' reports need a senior's signature
    TwoLevelSignoff,
    /// ready items are pushed to the least-loaded on-duty qualified reader
    AutoAssign,
}

impl Worklist {
    /// First start: the default consortium with an `imaging` and an `ecg` pool.
    pub async fn ensure_defaults(&self) -> Result<i64, Error> {
        let consortium = storage::sites::ensure_consortium(&self.db, storage::sites::DEFAULT_CONSORTIUM).await?;
        for (name, kind) in [("imaging", PoolKind::Imaging), ("ecg", PoolKind::Ecg)] {
            let mut tx = self.db.begin_write().await?;
            sqlx::query(
                "INSERT INTO pools (consortium_id, name, kind, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (consortium_id, name) DO NOTHING",
            )
            .bind(consortium)
            .bind(name)
            .bind(kind.as_str())
            .bind(self.now())
            .execute(&mut *tx)
            .await
            .map_err(Error::db("insert pool"))?;
            tx.commit().await?;
        }
        Ok(consortium)
    }

    /// Add a reading pool to a consortium (e.g. CT specialists).
    pub async fn add_pool(&self, consortium_id: i64, name: &str, kind: PoolKind) -> Result<Pool, Error> {
        let name = name.trim();
        if name.is_empty() || name.contains('/') || name.len() > 64 {
            return Err(Error::Invalid("a pool name is 1-64 characters without '/'".into()));
        }
        let mut tx = self.db.begin_write().await?;
        let id: Option<PoolId> = sqlx::query(
            "INSERT INTO pools (consortium_id, name, kind, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (consortium_id, name) DO NOTHING RETURNING id",
        )
        .bind(consortium_id)
        .bind(name)
        .bind(kind.as_str())
        .bind(self.now())
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::db("insert pool"))?
        .map(|r| r.get::<PoolId, _>(0));
        tx.commit().await?;
        let Some(id) = id else {
            return Err(Error::Conflict(format!("pool {name:?} already exists in this consortium")));
        };
        Ok(Pool { id, consortium_id, name: name.to_string(), kind })
    }

    pub async fn pools(&self) -> Result<Vec<Pool>, Error> {
        let rows = sqlx::query("SELECT id, consortium_id, name, kind FROM pools ORDER BY consortium_id, name")
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("list pools"))?;
        rows.iter()
            .map(|r| {
                Ok(Pool {
                    id: r.get("id"),
                    consortium_id: r.get("consortium_id"),
                    name: r.get("name"),
                    kind: PoolKind::try_from(r.get::<String, _>("kind").as_str())?,
                })
            })
            .collect()
    }

    /// A pool by name (`imaging`, or `CONSORTIUM/imaging` when there are several).
    pub async fn pool_by_name(&self, name: &str) -> Result<Pool, Error> {
        let (consortium, pool) = match name.split_once('/') {
            Some((c, p)) => (Some(c), p),
            None => (None, name),
        };
        let pools = self.pools().await?;
        let consortium_id = match consortium {
            Some(c) => Some(
                storage::sites::consortium_id(&self.db, c)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("consortium {c:?}")))?,
            ),
            None => None,
        };
        let matches: Vec<Pool> = pools
            .into_iter()
            .filter(|p| p.name == pool && consortium_id.is_none_or(|c| c == p.consortium_id))
            .collect();
        match matches.len() {
            0 => Err(Error::NotFound(format!("pool {name:?}"))),
            1 => Ok(matches.into_iter().next().expect("one")),
            _ => Err(Error::Invalid(format!("pool name {name:?} is ambiguous: use CONSORTIUM/{pool}"))),
        }
    }

    /// The pool of `kind` that reads for a consortium (falling back to the default one).
    pub async fn pool_for(&self, consortium_id: i64, kind: PoolKind) -> Result<Pool, Error> {
        let pools = self.pools().await?;
        // the consortium's default pool of the kind (named after it) first, then any other
        let mine = |p: &&Pool| p.consortium_id == consortium_id && p.kind == kind;
        if let Some(p) = pools.iter().filter(mine).find(|p| p.name == kind.as_str()).or_else(|| pools.iter().find(mine)) {
            return Ok(p.clone());
        }
        tracing::warn!(consortium_id, kind = %kind, "consortium has no pool of this kind; using the default consortium's");
        let default = storage::sites::consortium_id(&self.db, storage::sites::DEFAULT_CONSORTIUM).await?;
        pools
            .into_iter()
            .find(|p| Some(p.consortium_id) == default && p.kind == kind)
            .ok_or_else(|| Error::NotFound(format!("a {kind} pool")))
    }

    /// Create a user. Technicians and referrers belong to a site, readers to a pool,
    /// admins to neither.
    pub async fn add_user(
        &self,
        username: &str,
        display_name: &str,
        role: Role,
        site_id: Option<SiteId>,
        pool_id: Option<PoolId>,
        password: &str,
    ) -> Result<User, Error> {
        let username = username.trim();
        if username.is_empty() || username.len() > 64 || username.contains(char::is_whitespace) || username.contains(':') {
            return Err(Error::Invalid("a user name is 1-64 characters without spaces or ':'".into()));
        }
        match (role, site_id, pool_id) {
            (Role::Technician | Role::Referrer, Some(_), None) => {}
            (Role::Reader, None, Some(_)) => {}
            (Role::Admin, None, None) => {}
            (Role::Technician | Role::Referrer, _, _) => {
                return Err(Error::Invalid(format!("a {role} belongs to a site: give --site SITE (and no --pool)")))
            }
            (Role::Reader, _, _) => return Err(Error::Invalid("a reader belongs to a pool: give --pool POOL (and no --site)".into())),
            (Role::Admin, _, _) => return Err(Error::Invalid("an admin belongs to no site or pool".into())),
        }
        crate::passwords::check_new(username, password)?;
        let hash = hash_password(password)?;
        let mut tx = self.db.begin_write().await?;
        if sqlx::query("SELECT id FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::db("select user"))?
            .is_some()
        {
            return Err(Error::Conflict(format!("user {username:?} already exists")));
        }
        let id: UserId = sqlx::query(
            "INSERT INTO users (username, display_name, role, site_id, pool_id, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(username)
        .bind(if display_name.is_empty() { username } else { display_name })
        .bind(role.as_str())
        .bind(site_id)
        .bind(pool_id)
        .bind(hash)
        .bind(self.now())
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::db("insert user"))?
        .get(0);
        tx.commit().await?;
        self.user(id).await
    }

    pub async fn user(&self, id: UserId) -> Result<User, Error> {
        let r = sqlx::query("SELECT id, username, display_name, role, site_id, pool_id, seniority, supervisor, modalities, duty_hours FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select user"))?
            .ok_or_else(|| Error::NotFound(format!("user {id}")))?;
        user_from_row(&r)
    }

    /// Every account, by user name (admins' directory view).
    pub async fn users(&self) -> Result<Vec<User>, Error> {
        let rows = sqlx::query(
            "SELECT id, username, display_name, role, site_id, pool_id, seniority, supervisor, modalities, duty_hours \
             FROM users ORDER BY username",
        )
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("list users"))?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, Error> {
        let r = sqlx::query(
            "SELECT id, username, display_name, role, site_id, pool_id, seniority, supervisor, modalities, duty_hours FROM users WHERE username = $1",
        )
        .bind(username.trim())
        .fetch_optional(self.db.pool())
        .await
        .map_err(Error::db("select user"))?;
        r.map(|r| user_from_row(&r)).transpose()
    }

    /// Set a reader's qualifications: seniority, supervision of their pool (its alerts,
    /// reassigning its work), the modalities they read (empty: all) and their daily duty
    /// hours (local `FROM-TO`; None: always on duty).
    pub async fn set_qualifications(&self, user_id: UserId, q: &ReaderQualifications) -> Result<User, Error> {
        let user = self.user(user_id).await?;
        if user.role != Role::Reader {
            return Err(Error::Invalid(format!("{} is a {}, not a reader", user.username, user.role)));
        }
        if let Some(h) = &q.duty_hours {
            crate::hours::parse_hours(h)?;
        }
        let mods: Vec<String> = q.modalities.iter().map(|m| m.trim().to_ascii_uppercase()).filter(|m| !m.is_empty()).collect();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE users SET seniority = $1, supervisor = $2, modalities = $3, duty_hours = $4 WHERE id = $5")
            .bind(q.seniority.as_str())
            .bind(q.supervisor as i64)
            .bind(mods.join("\\"))
            .bind(q.duty_hours.as_deref().unwrap_or(""))
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("update user"))?;
        tx.commit().await?;
        self.user(user_id).await
    }

    /// Turn a pool setting on or off.
    pub async fn set_pool_flag(&self, pool_id: PoolId, flag: PoolFlag, on: bool) -> Result<(), Error> {
        let column = match flag {
            PoolFlag::TwoLevelSignoff => "two_level_signoff",
            PoolFlag::AutoAssign => "auto_assign",
        };
        let mut tx = self.db.begin_write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE pools SET {column} = $1 WHERE id = $2")))
            .bind(on as i64)
            .bind(pool_id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("update pool"))?;
        tx.commit().await?;
        Ok(())
    }

    /// Disable or re-enable an account. Disabling ends its sessions and tokens at once;
    /// the last enabled admin cannot be disabled (nobody could undo it).
    pub async fn set_disabled(&self, user: &User, disabled: bool) -> Result<(), Error> {
        if disabled && user.role == Role::Admin && self.count_admins().await? <= 1 {
            return Err(Error::Conflict("the last admin cannot be disabled / 不能停用最后一个管理员".into()));
        }
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i32::from(disabled))
            .bind(user.id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("disable user"))?;
        if disabled {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(user.id)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("end sessions"))?;
        }
        tx.commit().await?;
        tracing::info!(user = %user.username, disabled, "account disabled or enabled");
        Ok(())
    }

    /// Set a user's password (an admin's reset, or the user's own change). Every session
    /// and token of the user ends, except `keep` (the session the user changed it from).
    pub async fn set_password(&self, user: &User, password: &str, keep: Option<&str>) -> Result<(), Error> {
        crate::passwords::check_new(&user.username, password)?;
        let hash = hash_password(password)?;
        let mut tx = self.db.begin_write().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user.id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("set password"))?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(user.id)
            .bind(keep.map(token_hash).unwrap_or_default())
            .execute(&mut *tx)
            .await
            .map_err(Error::db("end sessions"))?;
        tx.commit().await?;
        tracing::info!(user = %user.username, "password set; other sessions ended");
        Ok(())
    }

    /// A user changes their own password: the current one is checked first (through the
    /// login throttle, like any password check).
    pub async fn change_own_password(&self, user: &User, old: &str, new: &str, client: &str, keep: Option<&str>) -> Result<(), Error> {
        self.authenticate(&user.username, old, client).await.map_err(|e| match e {
            Error::Forbidden(_) => Error::Forbidden("the current password is wrong / 当前密码错误".into()),
            e => e,
        })?;
        self.set_password(user, new, keep).await
    }

    /// The user names of disabled accounts.
    pub async fn disabled_usernames(&self) -> Result<std::collections::HashSet<String>, Error> {
        Ok(sqlx::query("SELECT username FROM users WHERE disabled <> 0")
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("select disabled users"))?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    pub async fn count_admins(&self) -> Result<i64, Error> {
        Ok(sqlx::query("SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled = 0")
            .fetch_one(self.db.pool())
            .await
            .map_err(Error::db("count admins"))?
            .get(0))
    }

    /// Check a user name and password. The same error for an unknown user and a wrong
    /// password, so names cannot be probed.
    ///
    /// Every attempt passes the login throttle first (`throttle`): `client` is the caller's
    /// address, by which repeated failures across names are slowed.
    pub async fn authenticate(&self, username: &str, password: &str, client: &str) -> Result<User, Error> {
        let username = username.trim();
        if username.len() > 64 {
            // no account has such a name (add_user allows 64); refused at once, so the
            // throttle's tables never hold a caller's kilobytes of invented name
            return Err(Error::Forbidden("wrong user name or password / 用户名或密码错误".into()));
        }
        self.before_password_check(username, client).await?;
        let row = sqlx::query(
            account_select!("WHERE username = $1 AND disabled = 0"),
        )
        .bind(username)
        .fetch_optional(self.db.pool())
        .await
        .map_err(Error::db("select user"))?;
        let bad = || Error::Forbidden("wrong user name or password / 用户名或密码错误".into());
        let Some(r) = row else {
            // spend the same time as a real check, and count it the same
            let _ = check_password(password, DUMMY_HASH.to_string()).await;
            self.password_failed(username, client).await?;
            return Err(bad());
        };
        let hash: String = r.get("password_hash");
        if !check_password(password, hash).await {
            self.password_failed(username, client).await?;
            return Err(bad());
        }
        self.password_succeeded(username).await?;
        user_from_row(&r)
    }

    /// The account as it is now, with its password hash, if it is enabled: what a cached
    /// Basic credential is checked against on every use, so a password changed or an
    /// account disabled through any node of the cluster ends the credential on every node
    /// (no argon2: one indexed read).
    pub async fn current_account(&self, id: UserId) -> Result<Option<(User, String)>, Error> {
        let r = sqlx::query(
            account_select!("WHERE id = $1 AND disabled = 0"),
        )
        .bind(id)
        .fetch_optional(self.db.pool())
        .await
        .map_err(Error::db("select user"))?;
        r.map(|r| Ok((user_from_row(&r)?, r.get("password_hash")))).transpose()
    }

    /// Open a login session; returns the bearer token (only its hash is stored).
    pub async fn create_session(&self, user_id: UserId) -> Result<String, Error> {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = hex::encode(raw);
        let now = self.now();
        let mut tx = self.db.begin_write().await?;
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash(&token))
            .bind(user_id)
            .bind(now)
            .bind(now + self.config.session_ttl.as_millis() as i64)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("insert session"))?;
        tx.commit().await?;
        Ok(token)
    }

    /// The user behind a session token, if the session is live: before its absolute end
    /// (`session_ttl`) and used within `session_idle`. A use marks it seen (at most once a
    /// minute, so reading does not turn into a write per request).
    pub async fn session_user(&self, token: &str) -> Result<Option<User>, Error> {
        let now = self.now();
        let hash = token_hash(token);
        let r = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.role, u.site_id, u.pool_id, u.seniority, u.supervisor, u.modalities, u.duty_hours, \
               COALESCE(s.last_seen_at, s.created_at) AS seen FROM sessions s \
             JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND COALESCE(s.last_seen_at, s.created_at) > $3 AND u.disabled = 0",
        )
        .bind(&hash)
        .bind(now)
        .bind(now - self.config.session_idle.as_millis() as i64)
        .fetch_optional(self.db.pool())
        .await
        .map_err(Error::db("select session"))?;
        let Some(r) = r else { return Ok(None) };
        let seen: i64 = r.get("seen");
        if now - seen > 60_000 {
            let mut tx = self.db.begin_write().await?;
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(&hash)
                .execute(&mut *tx)
                .await
                .map_err(Error::db("mark session seen"))?;
            tx.commit().await?;
        }
        user_from_row(&r).map(Some)
    }

    pub async fn end_session(&self, token: &str) -> Result<(), Error> {
        let mut tx = self.db.begin_write().await?;
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash(token))
            .execute(&mut *tx)
            .await
            .map_err(Error::db("delete session"))?;
        tx.commit().await?;
        Ok(())
    }
}

/// An enabled account with its password hash (sign-in, and checking a cached credential).
macro_rules! account_select {
    ($where:literal) => {
        concat!(
            "SELECT id, username, display_name, role, site_id, pool_id, seniority, supervisor, modalities, duty_hours, password_hash \
             FROM users ",
            $where
        )
    };
}
use account_select;

fn user_from_row(r: &sqlx::any::AnyRow) -> Result<User, Error> {
    Ok(User {
        id: r.get("id"),
        username: r.get("username"),
        display_name: r.get("display_name"),
        role: Role::try_from(r.get::<String, _>("role").as_str())?,
        site_id: r.get("site_id"),
        pool_id: r.get("pool_id"),
        seniority: Seniority::try_from(r.get::<String, _>("seniority").as_str())?,
        supervisor: r.get::<i64, _>("supervisor") != 0,
        modalities: r.get::<String, _>("modalities").split('\\').filter(|m| !m.is_empty()).map(str::to_string).collect(),
        duty_hours: Some(r.get::<String, _>("duty_hours")).filter(|h| !h.is_empty()),
    })
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn hash_password(password: &str) -> Result<String, Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Invalid(format!("cannot hash password: {e}")))
}

/// The threads that check passwords. Each argon2id check allocates its 19 MiB memory cost;
/// run on tokio's blocking pool, every check landed on whichever thread was free, and each
/// thread's malloc arena kept the 19 MiB: 32 concurrent first requests with HTTP Basic
/// credentials (right or wrong) took the process from 36 to 540 MiB. On two long-lived
/// threads that memory is reused, and what waits in the queue is a few bytes a check.
static PASSWORD_THREADS: std::sync::LazyLock<rayon::ThreadPool> = std::sync::LazyLock::new(|| {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .thread_name(|n| format!("password-{n}"))
        .build()
        .expect("the password-check threads can be started")
});

/// [`verify_password`] on the password-check threads.
async fn check_password(password: &str, hash: String) -> bool {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let pw = password.to_string();
    PASSWORD_THREADS.spawn(move || {
        let _ = tx.send(verify_password(&pw, &hash));
    });
    rx.await.unwrap_or(false)
}

/// argon2id verification; false for any malformed hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$7KH8wE3l1Ey3Y9cQpQ1b9Wq1r3m4bqzG9T3m9y8d5Jk";
