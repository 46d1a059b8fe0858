//! Orders (检查申请): what a site asks the hub to do, from its HIS (HL7 v2, FHIR) or from its
//! technician's desk (登记). The one place for how an order is placed, changed, cancelled,
//! offered to the modality worklist, matched to its study, and flagged when no study comes.
//! Adapters (MLLP, FHIR, the desk form) translate into [`NewOrder`]; no rule lives there.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use readhub_types::OrderId;

use crate::alerts::{raise_alert, AlertKind};
use crate::events::record_event;
use crate::scope::Scope;
use crate::{Error, EventKind, ItemId, ItemState, Priority, SiteId, StudyPk, Worklist};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// waiting for its study (offered on the modality worklist)
    Scheduled,
    /// its study arrived and carries it
    Arrived,
    /// withdrawn by the site
    Cancelled,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Scheduled => "scheduled",
            OrderState::Arrived => "arrived",
            OrderState::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> OrderState {
        match s {
            "arrived" => OrderState::Arrived,
            "cancelled" => OrderState::Cancelled,
            _ => OrderState::Scheduled,
        }
    }
}

/// The patient an order is for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderPatient {
    pub id: String,
    /// Issuer of Patient ID; the site's issuer when empty
    #[serde(default)]
    pub issuer: String,
    /// as a DICOM PN: `Zhang^San=张^三` (alphabetic = ideographic)
    #[serde(default)]
    pub name: String,
    /// YYYYMMDD
    #[serde(default)]
    pub birth_date: String,
    /// M, F or O
    #[serde(default)]
    pub sex: String,
}

/// An order as an adapter hands it over.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewOrder {
    pub accession_number: String,
    #[serde(default)]
    pub placer_order_number: String,
    #[serde(default)]
    pub filler_order_number: String,
    pub patient: OrderPatient,
    pub modality: String,
    #[serde(default)]
    pub procedure_code: String,
    #[serde(default)]
    pub procedure_description: String,
    #[serde(default = "routine")]
    pub priority: Priority,
    #[serde(default)]
    pub requesting_physician: String,
    #[serde(default)]
    pub requesting_department: String,
    /// 病史
    #[serde(default)]
    pub clinical_history: String,
    /// 检查目的: the question the reader answers
    #[serde(default)]
    pub clinical_question: String,
    /// unix ms; now when absent
    #[serde(default)]
    pub scheduled_at: Option<i64>,
    /// the modality that should do it (Scheduled Station AE Title); any when empty
    #[serde(default)]
    pub scheduled_station_ae: String,
    /// the Study Instance UID when the sender assigns it; readhub makes one otherwise
    #[serde(default)]
    pub study_uid: Option<String>,
}

fn routine() -> Priority {
    Priority::Routine
}

/// An order as the hub keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    pub id: OrderId,
    pub site_id: SiteId,
    pub site_name: String,
    pub accession_number: String,
    pub placer_order_number: String,
    pub filler_order_number: String,
    pub patient: OrderPatient,
    pub modality: String,
    pub procedure_code: String,
    pub procedure_description: String,
    pub priority: Priority,
    pub requesting_physician: String,
    pub requesting_department: String,
    pub clinical_history: String,
    pub clinical_question: String,
    pub scheduled_at: i64,
    pub scheduled_date: String,
    pub scheduled_time: String,
    pub scheduled_station_ae: String,
    /// the Study Instance UID the modality is given through the worklist
    pub study_uid: String,
    pub source: String,
    pub state: OrderState,
    pub study_pk: Option<StudyPk>,
    pub item_id: Option<ItemId>,
    pub overdue_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Limits of the DICOM attributes an order's fields become (PS3.5 6.2), so the worklist
/// never hands a modality a value it must truncate.
const SH: usize = 16;
const LO: usize = 64;
const PN_GROUP: usize = 64;

fn check_len(what: &str, v: &str, max: usize) -> Result<(), Error> {
    if v.chars().count() > max {
        return Err(Error::Invalid(format!("{what} is longer than {max} characters: {v:?} / {what} 过长")));
    }
    if v.contains(['\\', '\r', '\n', '\0']) {
        return Err(Error::Invalid(format!("{what} holds a backslash or control character: {v:?}")));
    }
    Ok(())
}

impl NewOrder {
    /// Check an order before it is kept: what is missing or too long is named.
    pub fn validate(&mut self) -> Result<(), Error> {
        self.accession_number = self.accession_number.trim().to_string();
        self.patient.id = self.patient.id.trim().to_string();
        self.modality = self.modality.trim().to_ascii_uppercase();
        self.patient.sex = self.patient.sex.trim().to_ascii_uppercase();
        self.patient.birth_date = self.patient.birth_date.trim().to_string();
        if self.accession_number.is_empty() {
            return Err(Error::Invalid("an order needs an accession number (检查号) / 缺少检查号".into()));
        }
        check_len("accession number", &self.accession_number, SH)?;
        if self.patient.id.is_empty() {
            return Err(Error::Invalid("an order needs the patient's ID / 缺少患者 ID".into()));
        }
        check_len("patient ID", &self.patient.id, LO)?;
        check_len("issuer of patient ID", &self.patient.issuer, LO)?;
        for group in self.patient.name.split('=') {
            if group.chars().count() > PN_GROUP {
                return Err(Error::Invalid(format!("patient name group {group:?} is longer than {PN_GROUP} characters")));
            }
        }
        if self.modality.is_empty() || self.modality.len() > SH || !self.modality.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::Invalid(format!(
                "modality {:?}: give a DICOM modality code such as DX, CR, CT or ECG / 检查类型无效",
                self.modality
            )));
        }
        if !matches!(self.patient.sex.as_str(), "" | "M" | "F" | "O") {
            return Err(Error::Invalid(format!("patient sex {:?}: M, F or O", self.patient.sex)));
        }
        if !self.patient.birth_date.is_empty()
            && (self.patient.birth_date.len() != 8 || !self.patient.birth_date.chars().all(|c| c.is_ascii_digit()))
        {
            return Err(Error::Invalid(format!("birth date {:?}: YYYYMMDD", self.patient.birth_date)));
        }
        check_len("placer order number", &self.placer_order_number, LO)?;
        check_len("filler order number", &self.filler_order_number, LO)?;
        check_len("procedure code", &self.procedure_code, SH)?;
        check_len("procedure description", &self.procedure_description, LO)?;
        check_len("requesting physician", &self.requesting_physician, PN_GROUP * 3)?;
        check_len("requesting department", &self.requesting_department, LO)?;
        check_len("scheduled station AE title", &self.scheduled_station_ae, SH)?;
        if let Some(u) = &self.study_uid {
            if !readhub_types::is_valid_uid(u) {
                return Err(Error::Invalid(format!("Study Instance UID {u:?} is not a valid UID")));
            }
        }
        for (what, v) in [("clinical history", &self.clinical_history), ("clinical question", &self.clinical_question)] {
            if v.chars().count() > 10_240 {
                return Err(Error::Invalid(format!("{what} is longer than 10,240 characters")));
            }
        }
        Ok(())
    }
}

/// A modality worklist query (the keys of PS3.4 K.6.1.2 readhub matches on). Values use
/// DICOM wildcards (`*`, `?`); empty means "any".
#[derive(Debug, Clone, Default)]
pub struct WorklistQuery {
    /// `YYYYMMDD`, `YYYYMMDD-`, `-YYYYMMDD` or `YYYYMMDD-YYYYMMDD`
    pub scheduled_date: String,
    pub modality: String,
    pub station_ae: String,
    pub patient_id: String,
    pub patient_name: String,
    pub accession_number: String,
    pub limit: usize,
}

/// DICOM wildcard matching (PS3.4 C.2.2.2.4): `*` any run, `?` one character.
pub fn wildcard_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi, mut star, mut mark) = (0usize, 0usize, None::<usize>, 0usize);
    while vi < v.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == v[vi]) {
            pi += 1;
            vi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = vi;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            vi = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Does a PN query match a stored name? Case-insensitive, against the whole value and
/// each component group (so `张*` finds `Zhang^San=张^三`), as QIDO does.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let p = pattern.trim().to_uppercase();
    if p.is_empty() || p == "*" {
        return true;
    }
    let n = name.to_uppercase();
    std::iter::once(n.as_str()).chain(n.split('=')).any(|form| wildcard_match(&p, form) || wildcard_match(&p, form.trim_end_matches('^')))
}

/// Does a `YYYYMMDD` date fall in a DICOM date range?
fn date_in_range(range: &str, date: &str) -> bool {
    let range = range.trim();
    if range.is_empty() {
        return true;
    }
    match range.split_once('-') {
        None => range == date,
        Some((from, to)) => (from.is_empty() || date >= from) && (to.is_empty() || date <= to),
    }
}

const ORDER_SELECT: &str = "SELECT o.id, o.site_id, s.name AS site_name, o.accession_number, o.placer_order_number, \
    o.filler_order_number, o.patient_id, o.issuer_of_patient_id, o.patient_name, o.birth_date, o.sex, o.modality, \
    o.procedure_code, o.procedure_description, o.priority, o.requesting_physician, o.requesting_department, \
    o.clinical_history, o.clinical_question, o.scheduled_at, o.scheduled_date, o.scheduled_time, \
    o.scheduled_station_ae, o.study_uid, o.source, o.state, o.study_id, o.item_id, o.overdue_at, o.created_at, \
    o.updated_at FROM orders o JOIN sites s ON s.id = o.site_id";

fn order_from_row(r: &sqlx::any::AnyRow) -> Order {
    Order {
        id: r.get("id"),
        site_id: r.get("site_id"),
        site_name: r.get("site_name"),
        accession_number: r.get("accession_number"),
        placer_order_number: r.get("placer_order_number"),
        filler_order_number: r.get("filler_order_number"),
        patient: OrderPatient {
            id: r.get("patient_id"),
            issuer: r.get("issuer_of_patient_id"),
            name: r.get("patient_name"),
            birth_date: r.get("birth_date"),
            sex: r.get("sex"),
        },
        modality: r.get("modality"),
        procedure_code: r.get("procedure_code"),
        procedure_description: r.get("procedure_description"),
        priority: Priority::from_i64(r.get("priority")),
        requesting_physician: r.get("requesting_physician"),
        requesting_department: r.get("requesting_department"),
        clinical_history: r.get("clinical_history"),
        clinical_question: r.get("clinical_question"),
        scheduled_at: r.get("scheduled_at"),
        scheduled_date: r.get("scheduled_date"),
        scheduled_time: r.get("scheduled_time"),
        scheduled_station_ae: r.get("scheduled_station_ae"),
        study_uid: r.get("study_uid"),
        source: r.get("source"),
        state: OrderState::parse(&r.get::<String, _>("state")),
        study_pk: r.get("study_id"),
        item_id: r.get("item_id"),
        overdue_at: r.get("overdue_at"),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

/// A new Study Instance UID for an order (2.25 + a random UUID, PS3.5 B.2).
fn new_study_uid() -> String {
    format!("2.25.{}", uuid::Uuid::new_v4().as_u128())
}

/// Link an order to a study that arrived with its accession number (and patient): the
/// order is "arrived", the item carries it, and its priority comes from the order.
/// Returns the order's priority when one was linked. Called by the arrival consumer in the
/// transaction that opens the item, and by [`Worklist::place_order`] for a study that came
/// before its order.
pub(crate) async fn link_study(
    tx: &mut storage::db::WriteTx<'_>,
    site_id: SiteId,
    accession_number: &str,
    patient_id: &str,
    study_pk: StudyPk,
    item_id: ItemId,
    now: i64,
) -> Result<Option<(OrderId, Priority)>, Error> {
    if accession_number.trim().is_empty() {
        return Ok(None);
    }
    let row = sqlx::query("SELECT id, patient_id, priority FROM orders WHERE site_id = $1 AND accession_number = $2 AND state = $3")
        .bind(site_id)
        .bind(accession_number.trim())
        .bind(OrderState::Scheduled.as_str())
        .fetch_optional(&mut **tx)
        .await
        .map_err(Error::db("select order by accession"))?;
    let Some(row) = row else { return Ok(None) };
    let (order_id, order_patient): (OrderId, String) = (row.get(0), row.get(1));
    if !patient_id.trim().is_empty() && order_patient != patient_id.trim() {
        // the same accession for another patient: a typing error at the modality, never
        // a reason to show one patient's request beside another's images
        let msg = format!(
            "study with accession {accession_number} is for patient {patient_id}, but order {order_id} with that accession \
             is for patient {order_patient}: not linked, check the modality's entry / 检查号相同但患者 ID 不同，未关联申请单"
        );
        raise_alert(tx, AlertKind::OrderMismatch, None, Some(site_id), Some(item_id), &msg, now).await?;
        record_event(tx, item_id, EventKind::OrderMismatch, None, now, &msg).await?;
        return Ok(None);
    }
    let priority = Priority::from_i64(row.get(2));
    sqlx::query("UPDATE orders SET state = $1, study_id = $2, item_id = $3, updated_at = $4 WHERE id = $5 AND state = $6")
        .bind(OrderState::Arrived.as_str())
        .bind(study_pk)
        .bind(item_id)
        .bind(now)
        .bind(order_id)
        .bind(OrderState::Scheduled.as_str())
        .execute(&mut **tx)
        .await
        .map_err(Error::db("link order"))?;
    record_event(tx, item_id, EventKind::OrderLinked, None, now, &format!("order {order_id} accession {accession_number}")).await?;
    Ok(Some((order_id, priority)))
}

impl Worklist {
    /// The local calendar date and time (`YYYYMMDD`, `HHMMSS`) of a unix-ms instant.
    fn local_date_time(&self, at_ms: i64) -> (String, String) {
        let secs = at_ms.div_euclid(1000) + i64::from(self.config.utc_offset_hours) * 3600;
        let t = chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default().naive_utc();
        (t.format("%Y%m%d").to_string(), t.format("%H%M%S").to_string())
    }

    /// Place an order for a site. A second order with the same accession number at the
    /// site is refused (named); a study that came before its order is linked at once.
    pub async fn place_order(&self, site_id: SiteId, mut new: NewOrder, source: &str) -> Result<Order, Error> {
        new.validate()?;
        let site = storage::sites::get_site(&self.db, site_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("site {site_id}")))?;
        if new.patient.issuer.trim().is_empty() {
            new.patient.issuer = site.issuer.clone();
        }
        let now = self.now();
        let at = new.scheduled_at.unwrap_or(now);
        let (date, time) = self.local_date_time(at);
        let mut tx = self.db.begin_write().await?;
        let existing: Option<(OrderId, String)> = sqlx::query("SELECT id, state FROM orders WHERE site_id = $1 AND accession_number = $2")
            .bind(site_id)
            .bind(&new.accession_number)
            .fetch_optional(&mut *tx)
            .await
            .map_err(Error::db("select order"))?
            .map(|r| (r.get(0), r.get(1)));
        if let Some((id, state)) = existing {
            return Err(Error::Conflict(format!(
                "site {} already has order {id} ({state}) with accession number {}: an accession number names one order; \
                 change that order instead / 检查号 {} 已存在",
                site.name, new.accession_number, new.accession_number
            )));
        }
        let id: OrderId = sqlx::query(
            "INSERT INTO orders (site_id, accession_number, placer_order_number, filler_order_number, patient_id, \
               issuer_of_patient_id, patient_name, birth_date, sex, modality, procedure_code, procedure_description, \
               priority, requesting_physician, requesting_department, clinical_history, clinical_question, scheduled_at, \
               scheduled_date, scheduled_time, scheduled_station_ae, study_uid, source, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, \
               $23, $24, $25, $25) RETURNING id",
        )
        .bind(site_id)
        .bind(&new.accession_number)
        .bind(&new.placer_order_number)
        .bind(&new.filler_order_number)
        .bind(&new.patient.id)
        .bind(&new.patient.issuer)
        .bind(&new.patient.name)
        .bind(&new.patient.birth_date)
        .bind(&new.patient.sex)
        .bind(&new.modality)
        .bind(&new.procedure_code)
        .bind(&new.procedure_description)
        .bind(new.priority as i64)
        .bind(&new.requesting_physician)
        .bind(&new.requesting_department)
        .bind(&new.clinical_history)
        .bind(&new.clinical_question)
        .bind(at)
        .bind(&date)
        .bind(&time)
        .bind(new.scheduled_station_ae.trim())
        .bind(new.study_uid.clone().unwrap_or_else(new_study_uid))
        .bind(source)
        .bind(OrderState::Scheduled.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::db("insert order"))?
        .get(0);
        // the study may have come first (the modality typed the accession number)
        let early = sqlx::query(
            "SELECT st.id, w.id, p.patient_id FROM studies st JOIN worklist_items w ON w.study_id = st.id \
             JOIN patients p ON p.id = st.patient_id WHERE st.site_id = $1 AND st.accession_number = $2 \
             ORDER BY st.id LIMIT 1",
        )
        .bind(site_id)
        .bind(&new.accession_number)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::db("select study by accession"))?;
        if let Some(r) = early {
            let (study_pk, item_id, patient): (StudyPk, ItemId, String) = (r.get(0), r.get(1), r.get(2));
            if let Some((_, priority)) = link_study(&mut tx, site_id, &new.accession_number, &patient, study_pk, item_id, now).await? {
                self.raise_item_priority(&mut tx, item_id, priority, now).await?;
            }
        }
        tx.commit().await?;
        tracing::info!(order = %id, site = %site.name, accession = %new.accession_number, source, "order placed");
        self.order(id).await?.ok_or_else(|| Error::NotFound(format!("order {id}")))
    }

    /// An item's priority raised to an order's (never lowered: a STAT flag from the
    /// modality or a rule stands), with its deadline.
    pub(crate) async fn raise_item_priority(&self, tx: &mut storage::db::WriteTx<'_>, item: ItemId, to: Priority, now: i64) -> Result<(), Error> {
        let r = sqlx::query("SELECT priority, pool_id, state FROM worklist_items WHERE id = $1")
            .bind(item)
            .fetch_one(&mut **tx)
            .await
            .map_err(Error::db("select item priority"))?;
        let (old, pool): (Priority, crate::PoolId) = (Priority::from_i64(r.get(0)), r.get(1));
        let state = ItemState::try_from(r.get::<String, _>(2).as_str())?;
        if to >= old || matches!(state, ItemState::Reported | ItemState::Rejected) {
            return Ok(());
        }
        let target = self.sla_target(pool, to).await?;
        sqlx::query("UPDATE worklist_items SET priority = $1, deadline_at = created_at + $2, updated_at = $3 WHERE id = $4")
            .bind(to as i64)
            .bind(target)
            .bind(now)
            .bind(item)
            .execute(&mut **tx)
            .await
            .map_err(Error::db("raise item priority"))?;
        record_event(tx, item, EventKind::PriorityChanged, None, now, &format!("{old:?} -> {to:?} from the order")).await
    }

    /// Change a scheduled order (HL7 order control XO, or the desk): everything but the
    /// accession number and the Study Instance UID. An order whose study came is not changed.
    pub async fn change_order(&self, site_id: SiteId, accession_number: &str, mut new: NewOrder) -> Result<Order, Error> {
        new.accession_number = accession_number.to_string();
        new.validate()?;
        let order = self.order_by_accession(site_id, accession_number).await?;
        if order.state != OrderState::Scheduled {
            return Err(Error::Conflict(format!(
                "order {} (accession {accession_number}) is {}: only a scheduled order can be changed / 申请单已到检或已取消，不能修改",
                order.id,
                order.state.as_str()
            )));
        }
        if new.patient.issuer.trim().is_empty() {
            new.patient.issuer = order.patient.issuer.clone();
        }
        let now = self.now();
        let at = new.scheduled_at.unwrap_or(order.scheduled_at);
        let (date, time) = self.local_date_time(at);
        let n = sqlx::query(
            "UPDATE orders SET placer_order_number = $1, filler_order_number = $2, patient_id = $3, issuer_of_patient_id = $4, \
               patient_name = $5, birth_date = $6, sex = $7, modality = $8, procedure_code = $9, procedure_description = $10, \
               priority = $11, requesting_physician = $12, requesting_department = $13, clinical_history = $14, \
               clinical_question = $15, scheduled_at = $16, scheduled_date = $17, scheduled_time = $18, \
               scheduled_station_ae = $19, updated_at = $20 WHERE id = $21 AND state = $22",
        )
        .bind(&new.placer_order_number)
        .bind(&new.filler_order_number)
        .bind(&new.patient.id)
        .bind(&new.patient.issuer)
        .bind(&new.patient.name)
        .bind(&new.patient.birth_date)
        .bind(&new.patient.sex)
        .bind(&new.modality)
        .bind(&new.procedure_code)
        .bind(&new.procedure_description)
        .bind(new.priority as i64)
        .bind(&new.requesting_physician)
        .bind(&new.requesting_department)
        .bind(&new.clinical_history)
        .bind(&new.clinical_question)
        .bind(at)
        .bind(&date)
        .bind(&time)
        .bind(new.scheduled_station_ae.trim())
        .bind(now)
        .bind(order.id)
        .bind(OrderState::Scheduled.as_str())
        .execute(self.db.pool())
        .await
        .map_err(Error::db("change order"))?
        .rows_affected();
        if n == 0 {
            return Err(Error::Conflict(format!("order {} changed state meanwhile; try again", order.id)));
        }
        self.order(order.id).await?.ok_or_else(|| Error::NotFound(format!("order {}", order.id)))
    }

    /// Cancel a scheduled order: it leaves the modality worklist. An order whose study came
    /// stays (its item is read; cancel the read there).
    pub async fn cancel_order(&self, site_id: SiteId, accession_number: &str) -> Result<Order, Error> {
        let order = self.order_by_accession(site_id, accession_number).await?;
        match order.state {
            OrderState::Cancelled => return Ok(order),
            OrderState::Arrived => {
                return Err(Error::Conflict(format!(
                    "order {} (accession {accession_number}) already has its study: it cannot be cancelled / 已到检，不能取消",
                    order.id
                )))
            }
            OrderState::Scheduled => {}
        }
        sqlx::query("UPDATE orders SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4")
            .bind(OrderState::Cancelled.as_str())
            .bind(self.now())
            .bind(order.id)
            .bind(OrderState::Scheduled.as_str())
            .execute(self.db.pool())
            .await
            .map_err(Error::db("cancel order"))?;
        self.order(order.id).await?.ok_or_else(|| Error::NotFound(format!("order {}", order.id)))
    }

    pub async fn order(&self, id: OrderId) -> Result<Option<Order>, Error> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!("{ORDER_SELECT} WHERE o.id = $1")))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select order"))?
            .as_ref()
            .map(order_from_row))
    }

    pub async fn order_by_accession(&self, site_id: SiteId, accession_number: &str) -> Result<Order, Error> {
        sqlx::query(sqlx::AssertSqlSafe(format!("{ORDER_SELECT} WHERE o.site_id = $1 AND o.accession_number = $2")))
            .bind(site_id)
            .bind(accession_number.trim())
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select order"))?
            .as_ref()
            .map(order_from_row)
            .ok_or_else(|| Error::NotFound(format!("order with accession number {accession_number:?} at site {site_id}")))
    }

    /// The order an item carries, if its study came with one.
    pub async fn order_of_item(&self, item: ItemId) -> Result<Option<Order>, Error> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!("{ORDER_SELECT} WHERE o.item_id = $1")))
            .bind(item)
            .fetch_optional(self.db.pool())
            .await
            .map_err(Error::db("select order of item"))?
            .as_ref()
            .map(order_from_row))
    }

    /// Orders a caller may see, newest first: a site's own (technicians, referrers), all
    /// (admins); readers see orders through their items.
    pub async fn list_orders(&self, scope: Scope, state: Option<OrderState>, limit: i64) -> Result<Vec<Order>, Error> {
        let (cond, key) = match scope {
            Scope::All => ("$1 = 0".to_string(), 0),
            Scope::Site(s) => ("o.site_id = $1".to_string(), s.get()),
            Scope::Pool(_) | Scope::Nothing => return Ok(Vec::new()),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ORDER_SELECT} WHERE {cond} AND ($2 = '' OR o.state = $2) ORDER BY o.scheduled_at DESC, o.id DESC LIMIT $3"
        )))
        .bind(key)
        .bind(state.map_or("", OrderState::as_str))
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("list orders"))?;
        Ok(rows.iter().map(order_from_row).collect())
    }

    /// The modality worklist of a site: its scheduled orders matching the query.
    pub async fn modality_worklist(&self, site_id: SiteId, q: &WorklistQuery) -> Result<Vec<Order>, Error> {
        // narrowed in SQL by site and state; the DICOM matching (wildcards, ranges, name
        // groups) in one place below, on a site's open orders (tens, not thousands)
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{ORDER_SELECT} WHERE o.site_id = $1 AND o.state = $2 ORDER BY o.scheduled_at, o.id LIMIT 5000")))
            .bind(site_id)
            .bind(OrderState::Scheduled.as_str())
            .fetch_all(self.db.pool())
            .await
            .map_err(Error::db("select worklist orders"))?;
        let any = |p: &str| {
            let p = p.trim();
            p.is_empty() || p.chars().all(|c| c == '*')
        };
        let limit = if q.limit == 0 { usize::MAX } else { q.limit };
        Ok(rows
            .iter()
            .map(order_from_row)
            .filter(|o| date_in_range(&q.scheduled_date, &o.scheduled_date))
            .filter(|o| any(&q.modality) || wildcard_match(q.modality.trim(), &o.modality))
            .filter(|o| any(&q.station_ae) || o.scheduled_station_ae.is_empty() || wildcard_match(q.station_ae.trim(), &o.scheduled_station_ae))
            .filter(|o| any(&q.patient_id) || wildcard_match(q.patient_id.trim(), &o.patient.id))
            .filter(|o| any(&q.accession_number) || wildcard_match(q.accession_number.trim(), &o.accession_number))
            .filter(|o| name_matches(&q.patient_name, &o.patient.name))
            .take(limit)
            .collect())
    }

    /// Flag orders that have waited longer than the configured time for their study: an
    /// alert to the site, once per order. Returns how many were flagged.
    pub async fn flag_overdue_orders(&self, now: i64) -> Result<usize, Error> {
        let horizon = now - self.config.order_overdue.as_millis() as i64;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{ORDER_SELECT} WHERE o.state = $1 AND o.overdue_at IS NULL AND o.scheduled_at < $2 ORDER BY o.id LIMIT 500"
        )))
        .bind(OrderState::Scheduled.as_str())
        .bind(horizon)
        .fetch_all(self.db.pool())
        .await
        .map_err(Error::db("select overdue orders"))?;
        let mut n = 0;
        for o in rows.iter().map(order_from_row) {
            let mut tx = self.db.begin_write().await?;
            let marked = sqlx::query("UPDATE orders SET overdue_at = $1 WHERE id = $2 AND overdue_at IS NULL AND state = $3")
                .bind(now)
                .bind(o.id)
                .bind(OrderState::Scheduled.as_str())
                .execute(&mut *tx)
                .await
                .map_err(Error::db("mark order overdue"))?
                .rows_affected();
            if marked == 1 {
                let msg = format!(
                    "order {} (accession {}, patient {}, {}) has had no study since {} {}: was it done? / 申请单已超时未到检",
                    o.id, o.accession_number, o.patient.id, o.modality, o.scheduled_date, o.scheduled_time
                );
                raise_alert(&mut tx, AlertKind::OrderOverdue, None, Some(o.site_id), None, &msg, now).await?;
                n += 1;
            }
            tx.commit().await?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_as_dicom_says() {
        assert!(wildcard_match("ZH*", "ZHANG^SAN"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("Z?ANG*", "ZHANG^SAN"));
        assert!(!wildcard_match("ZH?", "ZHANG"));
        assert!(wildcard_match("*SAN", "ZHANG^SAN"));
        assert!(!wildcard_match("LI*", "ZHANG^SAN"));
        assert!(name_matches("张*", "Zhang^San=张^三"));
        assert!(name_matches("zhang*", "Zhang^San=张^三"));
        assert!(name_matches("张^三", "Zhang^San=张^三"));
        assert!(!name_matches("李*", "Zhang^San=张^三"));
    }

    #[test]
    fn date_ranges() {
        assert!(date_in_range("", "20261202"));
        assert!(date_in_range("20261202", "20261202"));
        assert!(date_in_range("20261201-", "20261202"));
        assert!(date_in_range("-20261202", "20261202"));
        assert!(!date_in_range("20261203-20261204", "20261202"));
    }

    #[test]
    fn validation_names_the_field() {
        let mut o = NewOrder { accession_number: "A1".into(), patient: OrderPatient { id: "P1".into(), ..Default::default() }, modality: "dx".into(), ..Default::default() };
        o.validate().unwrap();
        assert_eq!(o.modality, "DX");
        o.accession_number = "12345678901234567".into();
        assert!(o.validate().unwrap_err().to_string().contains("accession number"));
        o.accession_number = "A1".into();
        o.patient.birth_date = "1990-01-01".into();
        assert!(o.validate().unwrap_err().to_string().contains("birth date"));
    }
}
