//! The SCIM operations on users and groups, between the thin route handlers and the store:
//! validation, uniqueness, preconditions, PATCH, and filtering with indexed fast paths.

use std::sync::Arc;
use std::time::SystemTime;

use secrecy::SecretString;
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::clock::{unix_millis, SharedClock};
use crate::ledger::{Db, GroupMember, LedgerError, Lookup, ResourceKind, ResourceRow, Store};
use crate::metrics::Metrics;
use crate::scim::error::ScimError;
use crate::scim::filter::{self, CompareOp, Filter};
use crate::scim::hook::{Change, GroupView, UserView, Woken, WriteHook};
use crate::scim::path::AttrPath;
use crate::scim::resource::{self, Prepared};
use crate::scim::schema::ResourceSchema;
use crate::scim::{patch, sort};

/// How long an identity provider is asked to wait when the store cannot take writes (full
/// disk, I/O error): long enough for an operator's alert to fire, short enough that changes
/// flow soon after space is freed.
pub(crate) const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 30;

impl From<LedgerError> for ScimError {
    fn from(err: LedgerError) -> Self {
        if err.is_unavailable() {
            ScimError::Unavailable {
                retry_after_secs: UNAVAILABLE_RETRY_AFTER_SECS,
                cause: err.into(),
            }
        } else {
            ScimError::internal(err)
        }
    }
}

/// A resource as stored, ready to render: everything but `meta.location`, which depends on
/// the URL the client used.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub kind: ResourceKind,
    pub id: String,
    pub version: i64,
    pub value: Value,
}

impl Resource {
    pub(crate) fn etag(&self) -> String {
        etag(self.version)
    }
}

pub(crate) fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// An `If-Match` / `If-None-Match` condition from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Precondition {
    Any,
    Versions(Vec<String>),
}

impl Precondition {
    /// Parses a header value such as `W/"3"`, `"3", W/"4"` or `*`.
    pub(crate) fn parse(header: &str) -> Precondition {
        if header.trim() == "*" {
            return Precondition::Any;
        }
        Precondition::Versions(
            header
                .split(',')
                .map(|tag| {
                    tag.trim()
                        .trim_start_matches("W/")
                        .trim_matches('"')
                        .to_owned()
                })
                .filter(|tag| !tag.is_empty())
                .collect(),
        )
    }

    pub(crate) fn matches(&self, version: i64) -> bool {
        match self {
            Precondition::Any => true,
            Precondition::Versions(tags) => tags.iter().any(|tag| *tag == version.to_string()),
        }
    }
}

/// A list or search request, already parsed.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListQuery {
    pub filter: Option<Filter>,
    pub sort_by: Option<AttrPath>,
    pub descending: bool,
    /// 1-based, as in SCIM.
    pub start_index: u64,
    pub count: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct ListPage {
    pub total_results: u64,
    pub start_index: u64,
    pub resources: Vec<Resource>,
}

/// One page of a scan over every stored resource (`ScimService::scan`).
pub(crate) struct ScanPage {
    pub total_results: u64,
    pub resources: Vec<Resource>,
    /// Where the next page starts.
    pub next: i64,
}

#[derive(Clone)]
pub struct ScimService {
    db: Db,
    // Shared, not owned: every list request hands its schema to a database thread, and a
    // deep copy per request cost more than the lookup itself.
    users: Arc<ResourceSchema>,
    groups: Arc<ResourceSchema>,
    clock: SharedClock,
    /// What keeps other systems in step with the writes, if anything does.
    hook: Option<Arc<dyn WriteHook>>,
    metrics: Option<Arc<Metrics>>,
}

/// The outcome of a write inside its transaction: the resource, and who must be woken.
type Written<T> = Result<(T, Woken), ScimError>;

impl ScimService {
    pub fn new(db: Db, clock: SharedClock, hook: Option<Arc<dyn WriteHook>>) -> Self {
        ScimService {
            db,
            users: Arc::new(ResourceSchema::user()),
            groups: Arc::new(ResourceSchema::group()),
            clock,
            hook,
            metrics: None,
        }
    }

    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn count_write(&self, kind: ResourceKind, operation: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.record_write(kind.as_str(), operation);
        }
    }

    pub(crate) fn schema(&self, kind: ResourceKind) -> &ResourceSchema {
        self.shared_schema(kind)
    }

    fn shared_schema(&self, kind: ResourceKind) -> &Arc<ResourceSchema> {
        match kind {
            ResourceKind::User => &self.users,
            ResourceKind::Group => &self.groups,
        }
    }

    fn now(&self) -> String {
        timestamp(self.clock.now())
    }

    /// Tells the hook the write has committed.
    fn committed<T>(&self, (value, woken): (T, Woken)) -> T {
        if let Some(hook) = &self.hook {
            hook.committed(woken);
        }
        value
    }

    pub async fn create(&self, kind: ResourceKind, body: Value) -> Result<Resource, ScimError> {
        let Prepared { resource, password } = resource::prepare(self.schema(kind), &body, None)?;
        let password = password.map(SecretString::from);
        let now = self.now();
        let now_ms = unix_millis(self.clock.as_ref());
        let row = ResourceRow {
            // Time-ordered (UUIDv7): each new id, and the user's ledger rows keyed by it,
            // lands at the end of its index instead of on a random page. Random v4 ids made
            // each create dirty a handful of scattered pages, the largest share of the bytes
            // every commit writes.
            id: uuid::Uuid::now_v7().to_string(),
            version: 1,
            created: now.clone(),
            last_modified: now,
            body: into_object(resource),
        };
        let hook = self.hook.clone();
        let written = self
            .db
            .write(move |store| -> Written<Resource> {
                let created = save(store, kind, row, true)?;
                let woken = record(
                    store,
                    hook.as_deref(),
                    None,
                    Some(&created),
                    password.as_ref(),
                    now_ms,
                )?;
                Ok((created, woken))
            })
            .await?;
        self.count_write(kind, "create");
        Ok(self.committed(written))
    }

    pub(crate) async fn get(&self, kind: ResourceKind, id: &str) -> Result<Resource, ScimError> {
        let id = id.to_owned();
        self.db
            .read(move |store| load(store, kind, &id)?.ok_or_else(|| not_found(kind, &id)))
            .await
    }

    pub(crate) async fn replace(
        &self,
        kind: ResourceKind,
        id: &str,
        body: Value,
        condition: Option<Precondition>,
    ) -> Result<Resource, ScimError> {
        self.update(kind, id, condition, move |_: &Value, _: &ResourceSchema| {
            Ok(body.clone())
        })
        .await
    }

    pub(crate) async fn patch(
        &self,
        kind: ResourceKind,
        id: &str,
        body: Value,
        condition: Option<Precondition>,
    ) -> Result<Resource, ScimError> {
        let operations = patch::parse_request(&body)?;
        self.update(
            kind,
            id,
            condition,
            move |existing: &Value, schema: &ResourceSchema| {
                let mut patched = existing.clone();
                patch::apply(&mut patched, &operations, schema)?;
                Ok(patched)
            },
        )
        .await
    }

    /// PUT and PATCH: `change` turns the stored resource into the requested one.
    ///
    /// The change is applied and validated off the writer thread, so a large PUT or PATCH
    /// does not hold the one thread every other write waits for. The resource is read on the
    /// writer's connection, whose cache most likely holds it (a pooled reader's cache is
    /// emptied by every commit: reading there halved the PATCH rate, BENCHMARKS.md). In its
    /// transaction the writer only checks that the resource is still the one the change was
    /// applied to, and applies it again if a concurrent write changed it meanwhile, so
    /// concurrent writes to one resource still apply one after the other.
    async fn update(
        &self,
        kind: ResourceKind,
        id: &str,
        condition: Option<Precondition>,
        change: impl Fn(&Value, &ResourceSchema) -> Result<Value, ScimError> + Send + Sync + 'static,
    ) -> Result<Resource, ScimError> {
        let schema = Arc::clone(self.shared_schema(kind));
        let change = Arc::new(change);
        let now = self.now();
        let now_ms = unix_millis(self.clock.as_ref());
        let id = id.to_owned();
        let hook = self.hook.clone();
        let (read, computed) = {
            let (schema, change, id, condition) = (
                Arc::clone(&schema),
                Arc::clone(&change),
                id.clone(),
                condition.clone(),
            );
            let existing = self
                .db
                .read_on_writer(move |store| load_for_write(store, kind, &id, condition.as_ref()))
                .await?;
            let computed = changed(&existing.value, &schema, &*change)?;
            (existing.value, computed)
        };
        let written = self
            .db
            .write(move |store| -> Written<Resource> {
                let existing = load_for_write(store, kind, &id, condition.as_ref())?;
                let Prepared { resource, password } = if existing.value == read {
                    computed
                } else {
                    changed(&existing.value, &schema, &*change)?
                };
                let password = password.map(SecretString::from);
                let (after, changed) = store_change(store, kind, existing.clone(), resource, now)?;
                let woken = if changed || password.is_some() {
                    record(
                        store,
                        hook.as_deref(),
                        Some(&existing),
                        Some(&after),
                        password.as_ref(),
                        now_ms,
                    )?
                } else {
                    Woken::default()
                };
                Ok((after, woken))
            })
            .await?;
        self.count_write(kind, "update");
        Ok(self.committed(written))
    }

    pub(crate) async fn delete(
        &self,
        kind: ResourceKind,
        id: &str,
        condition: Option<Precondition>,
    ) -> Result<(), ScimError> {
        let id = id.to_owned();
        let now_ms = unix_millis(self.clock.as_ref());
        let hook = self.hook.clone();
        let written = self
            .db
            .write(move |store| -> Written<()> {
                let existing = load_for_write(store, kind, &id, condition.as_ref())?;
                store.delete(kind, &id)?;
                let woken = record(store, hook.as_deref(), Some(&existing), None, None, now_ms)?;
                Ok(((), woken))
            })
            .await?;
        self.count_write(kind, "delete");
        self.committed(written);
        Ok(())
    }

    /// Marks every user for planning again, e.g. after the mappings changed: the planner
    /// records their desired states under the mappings now in force. Works in batches so
    /// no single transaction holds the writer for long.
    pub(crate) async fn replan_all(&self) -> Result<usize, ScimError> {
        if self.hook.is_none() {
            return Ok(0);
        }
        const BATCH: u64 = 1000;
        let mut after = 0;
        let mut total = 0;
        loop {
            let (count, last) = self
                .db
                .write(move |store| store.mark_users_after(after, BATCH))
                .await?;
            self.committed(((), Woken::planning()));
            total += count;
            if (count as u64) < BATCH {
                return Ok(total);
            }
            after = last;
        }
    }

    /// Searches users and groups together: the filter applies to both, users come first.
    pub(crate) async fn search_all(&self, query: ListQuery) -> Result<ListPage, ScimError> {
        let (users, groups) = (Arc::clone(&self.users), Arc::clone(&self.groups));
        self.db
            .read(move |store| {
                let everything = ListQuery {
                    start_index: 1,
                    count: u64::MAX,
                    ..query.clone()
                };
                let mut all = list_in(store, ResourceKind::User, &users, &everything)?.resources;
                all.extend(list_in(store, ResourceKind::Group, &groups, &everything)?.resources);
                let total_results = all.len() as u64;
                let resources = all
                    .into_iter()
                    .skip(query.start_index.saturating_sub(1) as usize)
                    .take(query.count as usize)
                    .collect();
                Ok(ListPage {
                    total_results,
                    start_index: query.start_index,
                    resources,
                })
            })
            .await
    }

    pub(crate) async fn list(
        &self,
        kind: ResourceKind,
        query: ListQuery,
    ) -> Result<ListPage, ScimError> {
        let schema = Arc::clone(self.shared_schema(kind));
        if let Some(filter) = &query.filter {
            filter::validate(filter, &schema)?;
        }
        self.db
            .read(move |store| list_in(store, kind, &schema, &query))
            .await
    }

    /// Up to `count` stored resources in creation order, from `after` (0 for the first page,
    /// then the page's `next`): each resource stored through the whole scan is in it once,
    /// whatever is created or deleted between its pages.
    pub(crate) async fn scan(
        &self,
        kind: ResourceKind,
        after: i64,
        count: u64,
    ) -> Result<ScanPage, ScimError> {
        self.db
            .read(move |store| {
                let rows = store.page_after(kind, after, count)?;
                let next = rows.last().map_or(after, |(key, _)| *key);
                Ok(ScanPage {
                    total_results: store.count(kind)?,
                    resources: rows
                        .into_iter()
                        .map(|(_, row)| assemble(store, kind, row))
                        .collect::<Result<_, LedgerError>>()?,
                    next,
                })
            })
            .await
    }
}

/// The stored resource after `change`, validated and in canonical form.
fn changed(
    existing: &Value,
    schema: &ResourceSchema,
    change: &dyn Fn(&Value, &ResourceSchema) -> Result<Value, ScimError>,
) -> Result<Prepared, ScimError> {
    let requested = change(existing, schema)?;
    resource::prepare(schema, &requested, Some(existing))
}

fn list_in(
    store: &Store<'_>,
    kind: ResourceKind,
    schema: &ResourceSchema,
    query: &ListQuery,
) -> Result<ListPage, ScimError> {
    let offset = query.start_index.saturating_sub(1);
    // Unfiltered, unsorted lists page in SQL: no need to look at every resource.
    if query.filter.is_none() && query.sort_by.is_none() {
        let total_results = store.count(kind)?;
        let resources = if query.count == 0 {
            Vec::new()
        } else {
            store
                .page(kind, offset, query.count)?
                .into_iter()
                .map(|row| assemble(store, kind, row))
                .collect::<Result<_, _>>()?
        };
        return Ok(ListPage {
            total_results,
            start_index: query.start_index,
            resources,
        });
    }

    let mut matched = Vec::new();
    let mut keep = |resource: Resource| {
        if query
            .filter
            .as_ref()
            .is_none_or(|f| filter::matches(f, &resource.value, schema))
        {
            matched.push(resource);
        }
    };
    match query.filter.as_ref().and_then(|f| indexed_lookup(kind, f)) {
        Some(lookup) => {
            for row in lookup.run(store, kind)? {
                keep(assemble(store, kind, row)?);
            }
        }
        None => store.for_each(kind, |row| {
            keep(assemble(store, kind, row)?);
            Ok(())
        })?,
    }
    if let Some(by) = &query.sort_by {
        matched.sort_by(|a, b| {
            let order = sort::compare(&a.value, &b.value, by, schema);
            if query.descending {
                order.reverse()
            } else {
                order
            }
        });
    }
    let total_results = matched.len() as u64;
    let resources = matched
        .into_iter()
        .skip(offset as usize)
        .take(query.count as usize)
        .collect();
    Ok(ListPage {
        total_results,
        start_index: query.start_index,
        resources,
    })
}

/// An equality on an indexed attribute that narrows a filter's candidates before the full
/// filter is evaluated on each of them.
enum IndexedLookup {
    Id(String),
    Name(String),
    ExternalId(String),
    Email(String),
}

impl IndexedLookup {
    fn run(&self, store: &Store<'_>, kind: ResourceKind) -> Result<Vec<ResourceRow>, LedgerError> {
        match self {
            IndexedLookup::Id(id) => Ok(store.get(kind, id)?.into_iter().collect()),
            IndexedLookup::Name(name) => store.find_by_name(kind, name),
            IndexedLookup::ExternalId(value) => store.find_by_external_id(kind, value),
            IndexedLookup::Email(email) => store.find_users_by_email(email),
        }
    }
}

fn indexed_lookup(kind: ResourceKind, filter: &Filter) -> Option<IndexedLookup> {
    match filter {
        Filter::And(left, right) => {
            indexed_lookup(kind, left).or_else(|| indexed_lookup(kind, right))
        }
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: Value::String(value),
        } => {
            let attr = path.attr.to_ascii_lowercase();
            let sub = path.sub_attr.as_deref().map(str::to_ascii_lowercase);
            let core = path
                .urn
                .as_deref()
                .is_none_or(|urn| urn.to_ascii_lowercase().contains(":core:2.0:"));
            if !core {
                return None;
            }
            let value = value.clone();
            match (kind, attr.as_str(), sub.as_deref()) {
                (_, "id", None) => Some(IndexedLookup::Id(value)),
                (_, "externalid", None) => Some(IndexedLookup::ExternalId(value)),
                (ResourceKind::User, "username", None) => Some(IndexedLookup::Name(value)),
                (ResourceKind::Group, "displayname", None) => Some(IndexedLookup::Name(value)),
                (ResourceKind::User, "emails", None | Some("value")) => {
                    Some(IndexedLookup::Email(value))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// Loads the current state for a write, applying the client's precondition.
fn load_for_write(
    store: &Store<'_>,
    kind: ResourceKind,
    id: &str,
    condition: Option<&Precondition>,
) -> Result<Resource, ScimError> {
    let existing = load(store, kind, id)?.ok_or_else(|| not_found(kind, id))?;
    if let Some(condition) = condition {
        if !condition.matches(existing.version) {
            return Err(ScimError::PreconditionFailed(format!(
                "{} {id} is at version {}, not the one given in If-Match",
                kind.as_str(),
                existing.etag()
            )));
        }
    }
    Ok(existing)
}

/// Writes a changed resource. An identical resource keeps its version, so an identity
/// provider re-sending the same state does not look like a change downstream.
fn store_change(
    store: &Store<'_>,
    kind: ResourceKind,
    existing: Resource,
    resource: Value,
    now: String,
) -> Result<(Resource, bool), ScimError> {
    let previous = strip_server_attributes(kind, existing.value.clone());
    if previous == resource {
        return Ok((existing, false));
    }
    let created = existing.value["meta"]["created"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let row = ResourceRow {
        id: existing.id,
        version: existing.version + 1,
        created,
        last_modified: now,
        body: into_object(resource),
    };
    Ok((save(store, kind, row, false)?, true))
}

/// Hands what a write did to the hook, if there is one, in the write's transaction.
fn record(
    store: &Store<'_>,
    hook: Option<&dyn WriteHook>,
    before: Option<&Resource>,
    after: Option<&Resource>,
    password: Option<&SecretString>,
    now_ms: i64,
) -> Result<Woken, ScimError> {
    let Some(hook) = hook else {
        return Ok(Woken::default());
    };
    let Some(kind) = after.or(before).map(|r| r.kind) else {
        return Ok(Woken::default());
    };
    let change = match kind {
        ResourceKind::User => {
            let Some(user) = after.or(before).and_then(|u| UserView::of(&u.value)) else {
                return Ok(Woken::default());
            };
            if after.is_some() {
                Change::User {
                    user,
                    password,
                    created: before.is_none(),
                }
            } else {
                Change::UserDeleted(user)
            }
        }
        ResourceKind::Group => Change::Group {
            before: before.map(|g| GroupView::of(&g.value)),
            after: after.map(|g| GroupView::of(&g.value)),
        },
    };
    Ok(hook.record(store, change, now_ms)?)
}

/// Inserts or updates a prepared resource with its lookup columns and memberships.
fn save(
    store: &Store<'_>,
    kind: ResourceKind,
    mut row: ResourceRow,
    is_new: bool,
) -> Result<Resource, ScimError> {
    let lookup = lookup_of(kind, &row.body);
    if kind == ResourceKind::User {
        if let Some(holder) = store.user_id_by_name(&lookup.name)? {
            if holder != row.id {
                return Err(ScimError::Uniqueness(format!(
                    "userName \"{}\" is already taken",
                    lookup.name
                )));
            }
        }
    }
    let members = match kind {
        ResourceKind::Group => Some(take_members(store, &mut row.body, &row.id)?),
        ResourceKind::User => None,
    };
    if is_new {
        store.insert(kind, &row, &lookup)?;
    } else {
        store.update(kind, &row, &lookup)?;
    }
    if let Some(members) = members {
        store.replace_members(&row.id, &members)?;
    }
    // A new user belongs to no group yet: nothing to read back.
    if is_new && kind == ResourceKind::User {
        return Ok(shape(kind, row, Vec::new()));
    }
    Ok(assemble(store, kind, row)?)
}

fn lookup_of(kind: ResourceKind, body: &Map<String, Value>) -> Lookup {
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    let name_key = match kind {
        ResourceKind::User => "userName",
        ResourceKind::Group => "displayName",
    };
    let emails = match body.get("emails") {
        Some(Value::Array(emails)) => emails
            .iter()
            .filter_map(|email| email.get("value").and_then(Value::as_str))
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    Lookup {
        name: text(name_key).unwrap_or_default(),
        external_id: text("externalId"),
        emails,
    }
}

/// Moves `members` out of a group body into rows, checking that each member exists.
fn take_members(
    store: &Store<'_>,
    body: &mut Map<String, Value>,
    group_id: &str,
) -> Result<Vec<GroupMember>, ScimError> {
    let Some(Value::Array(members)) = body.remove("members") else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::with_capacity(members.len());
    for member in members {
        let Some(value) = member.get("value").and_then(Value::as_str) else {
            return Err(ScimError::InvalidValue(
                "every group member needs a \"value\" naming a user or group id".into(),
            ));
        };
        if value == group_id {
            return Err(ScimError::InvalidValue(
                "a group cannot be a member of itself".into(),
            ));
        }
        let Some(kind) = store.kind_of(value)? else {
            return Err(ScimError::InvalidValue(format!(
                "group member \"{value}\" is not an existing user or group"
            )));
        };
        rows.push(GroupMember {
            value: value.to_owned(),
            kind,
            display: member
                .get("display")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Ok(rows)
}

/// A user as stored, with its groups, as the mappings render it.
pub(crate) fn stored_user(store: &Store<'_>, id: &str) -> Result<Option<Value>, LedgerError> {
    match store.get(ResourceKind::User, id)? {
        Some(row) => Ok(Some(assemble(store, ResourceKind::User, row)?.value)),
        None => Ok(None),
    }
}

fn load(store: &Store<'_>, kind: ResourceKind, id: &str) -> Result<Option<Resource>, ScimError> {
    match store.get(kind, id)? {
        Some(row) => Ok(Some(assemble(store, kind, row)?)),
        None => Ok(None),
    }
}

/// Builds the full SCIM representation of a stored row (without `meta.location`).
fn assemble(
    store: &Store<'_>,
    kind: ResourceKind,
    row: ResourceRow,
) -> Result<Resource, LedgerError> {
    let related: Vec<Value> = match kind {
        ResourceKind::User => store
            .groups_of(&row.id)?
            .into_iter()
            .map(|(id, display)| json!({"value": id, "display": display, "type": "direct"}))
            .collect(),
        ResourceKind::Group => store
            .members(&row.id)?
            .into_iter()
            .map(|member| {
                let mut entry = json!({"value": member.value, "type": member.kind.as_str()});
                if let Some(display) = member.display {
                    entry["display"] = Value::String(display);
                }
                entry
            })
            .collect(),
    };
    Ok(shape(kind, row, related))
}

/// A stored row as a SCIM resource, with its user's groups or its group's members.
fn shape(kind: ResourceKind, row: ResourceRow, related: Vec<Value>) -> Resource {
    let mut value = Map::with_capacity(row.body.len() + 3);
    value.insert("id".into(), Value::String(row.id.clone()));
    value.extend(row.body);
    if !related.is_empty() {
        let key = match kind {
            ResourceKind::User => "groups",
            ResourceKind::Group => "members",
        };
        value.insert(key.into(), Value::Array(related));
    }
    value.insert(
        "meta".into(),
        json!({
            "resourceType": kind.as_str(),
            "created": row.created,
            "lastModified": row.last_modified,
            "version": etag(row.version),
        }),
    );
    Resource {
        kind,
        id: row.id,
        version: row.version,
        value: Value::Object(value),
    }
}

/// The client-settable part of an assembled resource, comparable with `prepare`'s output.
fn strip_server_attributes(kind: ResourceKind, mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.remove("id");
        map.remove("meta");
        if kind == ResourceKind::User {
            map.remove("groups");
        }
    }
    value
}

fn into_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        // `prepare` only ever returns objects; keep whatever else as an empty resource body.
        _ => Map::new(),
    }
}

fn not_found(kind: ResourceKind, id: &str) -> ScimError {
    ScimError::NotFound(format!("{} {id} not found", kind.as_str()))
}

pub(crate) fn timestamp(at: SystemTime) -> String {
    OffsetDateTime::from(at)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}
