//! Who may see what: the one visibility rule of readhub.
//!
//! Technicians and referrers see their site's studies, items, reports and critical
//! results; readers see what is routed to their pool; admins see everything. Every route,
//! query and export asks [`Scope::of`] and the methods here; nothing else matches on roles
//! to decide visibility.

use storage::query::{StudyFilter, StudySelection};

use readhub_types::{PoolId, SiteId};

use crate::{Role, User};

/// The part of the hub a user may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// everything (admins)
    All,
    /// one site's studies (technicians, referrers)
    Site(SiteId),
    /// the studies routed to one reading pool (readers)
    Pool(PoolId),
    /// nothing (an account whose site or pool is missing)
    Nothing,
}

/// The studies routed to a pool: the worklist tells storage which studies a pool-scoped
/// caller may see, without storage reading workflow tables itself.
const POOL_STUDIES: &str = "SELECT study_id FROM worklist_items WHERE pool_id = ?";

impl Scope {
    /// The scope of a user: the one place a role turns into visibility.
    pub fn of(user: &User) -> Scope {
        match (user.role, user.site_id, user.pool_id) {
            (Role::Admin, _, _) => Scope::All,
            (Role::Reader, _, Some(pool)) => Scope::Pool(pool),
            (Role::Technician | Role::Referrer, Some(site), _) => Scope::Site(site),
            _ => Scope::Nothing,
        }
    }

    /// May a holder of this scope see something of `site_id`, routed to `pool_id`?
    pub fn sees(&self, site_id: SiteId, pool_id: Option<PoolId>) -> bool {
        match *self {
            Scope::All => true,
            Scope::Site(s) => s == site_id,
            Scope::Pool(p) => pool_id == Some(p),
            Scope::Nothing => false,
        }
    }

    /// The study filter storage applies to DICOMweb queries and retrieves.
    pub fn study_filter(&self) -> StudyFilter {
        match *self {
            Scope::All => StudyFilter::All,
            Scope::Site(s) => StudyFilter::Site(s),
            Scope::Pool(p) => StudyFilter::Selected(StudySelection::new(POOL_STUDIES, p.get())),
            Scope::Nothing => StudyFilter::Nothing,
        }
    }

    /// A SQL condition on a row with a site column and a pool column (e.g. `c.site_id`,
    /// `c.pool_id`), with the one value it binds as `$n`.
    pub(crate) fn sql(&self, site_col: &str, pool_col: &str, n: usize) -> (String, i64) {
        match *self {
            Scope::All => (format!("${n} = 0"), 0),
            Scope::Site(s) => (format!("{site_col} = ${n}"), s.get()),
            Scope::Pool(p) => (format!("{pool_col} = ${n}"), p.get()),
            Scope::Nothing => (format!("${n} = 1 AND 1 = 0"), 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Seniority;

    fn user(role: Role, site: Option<i64>, pool: Option<i64>) -> User {
        let (site, pool) = (site.map(SiteId::new), pool.map(PoolId::new));
        User {
            id: crate::UserId::new(1),
            username: "u".into(),
            display_name: "u".into(),
            role,
            site_id: site,
            pool_id: pool,
            seniority: Seniority::Junior,
            supervisor: false,
            modalities: vec![],
            duty_hours: None,
        }
    }

    #[test]
    fn each_role_sees_its_part() {
        let admin = Scope::of(&user(Role::Admin, None, None));
        let tech = Scope::of(&user(Role::Technician, Some(3), None));
        let referrer = Scope::of(&user(Role::Referrer, Some(4), None));
        let reader = Scope::of(&user(Role::Reader, None, Some(7)));
        assert_eq!(
            (admin, tech, referrer, reader),
            (Scope::All, Scope::Site(SiteId::new(3)), Scope::Site(SiteId::new(4)), Scope::Pool(PoolId::new(7)))
        );
        let (s, p) = (SiteId::new, |n| Some(PoolId::new(n)));
        assert!(admin.sees(s(9), None));
        assert!(tech.sees(s(3), p(7)) && !tech.sees(s(4), p(7)));
        assert!(reader.sees(s(3), p(7)) && !reader.sees(s(3), p(8)) && !reader.sees(s(3), None));
    }

    #[test]
    fn an_account_without_its_site_or_pool_sees_nothing() {
        for s in [
            Scope::of(&user(Role::Technician, None, None)),
            Scope::of(&user(Role::Referrer, None, Some(7))),
            Scope::of(&user(Role::Reader, Some(3), None)),
        ] {
            assert_eq!(s, Scope::Nothing);
            assert!(!s.sees(SiteId::new(3), Some(PoolId::new(7))));
            assert_eq!(s.study_filter(), StudyFilter::Nothing);
        }
    }
}
