//! Who may see which entries on the dashboard. The caller's bearer token is reviewed (TokenReview), and
//! an entry is shown when the caller may read ErrorViews in the namespace of its source or destination
//! pod (SubjectAccessReview) — the same rule as ErrorViews themselves (SPEC §5). Whoever may read
//! ErrorViews in the operator's namespace sees everything. Without a token the caller sees nothing, unless
//! the operator was started with `--dashboard-anonymous`. Answers are cached briefly so that a page
//! refreshing every second costs the API server a review per 30 s, not per request.

use std::collections::HashSet;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use faultline_model::Entry;
use k8s_openapi::api::authentication::v1::UserInfo;
use kube::Client;

use crate::auth;
use crate::review_cache::{token_digest, ReviewCache};

const TTL: Duration = Duration::from_secs(30);

/// A caller whose identity is known (or who needs none).
#[derive(Clone)]
pub enum Viewer {
    /// Anonymous access was opened explicitly: everything is visible.
    Anyone,
    User {
        token_key: [u8; 32],
        user: UserInfo,
    },
}

/// Why a request is refused, as the HTTP answer it becomes.
#[derive(Debug)]
pub enum Refusal {
    NoToken,
    BadToken,
    Unavailable(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (code, msg) = match self {
            Refusal::NoToken => (StatusCode::UNAUTHORIZED, "a bearer token is required".to_owned()),
            Refusal::BadToken => (StatusCode::UNAUTHORIZED, "the token is not valid".to_owned()),
            Refusal::Unavailable(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("cannot check access: {e}")),
        };
        (code, axum::Json(serde_json::json!({ "error": msg }))).into_response()
    }
}

/// The namespaces whose entries a viewer may see.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub everything: bool,
    pub namespaces: HashSet<String>,
}

impl Scope {
    pub fn sees(&self, e: &Entry) -> bool {
        self.everything
            || [&e.src, &e.dst].iter().any(|ep| ep.namespace.as_ref().is_some_and(|ns| self.namespaces.contains(ns)))
    }
}

#[derive(Clone)]
pub struct Access {
    client: Client,
    /// The operator's namespace: ErrorViews there are cluster-wide, and so is access to them.
    namespace: String,
    anonymous: bool,
    /// Token digest → who it is (none: not a valid token).
    users: ReviewCache<[u8; 32], Option<UserInfo>>,
    /// (token digest, namespace) → may read ErrorViews there.
    decisions: ReviewCache<([u8; 32], String), bool>,
}

impl Access {
    /// This access, but never open to callers without a token (recordings can hold secrets).
    pub fn with_token_required(&self) -> Access {
        Access { anonymous: false, ..self.clone() }
    }

    pub fn new(client: Client, namespace: String, anonymous: bool) -> Access {
        Access { client, namespace, anonymous, users: ReviewCache::new(TTL), decisions: ReviewCache::new(TTL) }
    }

    pub async fn viewer(&self, headers: &HeaderMap) -> Result<Viewer, Refusal> {
        let Some(token) = auth::bearer(headers) else {
            return if self.anonymous { Ok(Viewer::Anyone) } else { Err(Refusal::NoToken) };
        };
        let token_key = token_digest(token);
        let user = match self.users.get(&token_key) {
            Some(user) => user,
            None => {
                let user =
                    auth::review(&self.client, token, None).await.map_err(|e| Refusal::Unavailable(e.to_string()))?;
                self.users.put(token_key, user.clone());
                user
            }
        };
        user.map(|user| Viewer::User { token_key, user }).ok_or(Refusal::BadToken)
    }

    /// May the viewer read ErrorViews in `namespace`?
    pub async fn may_read(&self, viewer: &Viewer, namespace: &str) -> Result<bool, Refusal> {
        let Viewer::User { token_key, user } = viewer else { return Ok(true) };
        let key = (*token_key, namespace.to_owned());
        if let Some(ok) = self.decisions.get(&key) {
            return Ok(ok);
        }
        let ok = auth::may_read_errorviews(&self.client, user, namespace)
            .await
            .map_err(|e| Refusal::Unavailable(e.to_string()))?;
        self.decisions.put(key, ok);
        Ok(ok)
    }

    /// What the viewer may see of these entries' namespaces.
    pub async fn scope<'a>(
        &self,
        viewer: &Viewer,
        namespaces: impl IntoIterator<Item = &'a str>,
    ) -> Result<Scope, Refusal> {
        if self.may_read(viewer, &self.namespace).await? {
            return Ok(Scope { everything: true, namespaces: HashSet::new() });
        }
        let mut scope = Scope::default();
        let wanted: HashSet<&str> = namespaces.into_iter().collect();
        for ns in wanted {
            if self.may_read(viewer, ns).await? {
                scope.namespaces.insert(ns.to_owned());
            }
        }
        Ok(scope)
    }

    /// Widens `scope` with the namespaces of `e` the viewer may read, asking only about new ones.
    pub async fn extend(&self, viewer: &Viewer, scope: &mut Scope, e: &Entry) -> Result<(), Refusal> {
        if scope.everything {
            return Ok(());
        }
        for ns in [&e.src, &e.dst].iter().filter_map(|ep| ep.namespace.as_deref()) {
            if !scope.namespaces.contains(ns) && self.may_read(viewer, ns).await? {
                scope.namespaces.insert(ns.to_owned());
            }
        }
        Ok(())
    }
}

/// The namespaces named by these entries.
pub fn namespaces_of<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> HashSet<&'a str> {
    entries.into_iter().flat_map(|e| [&e.src, &e.dst]).filter_map(|ep| ep.namespace.as_deref()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_model::entry::{Endpoint, Protocol};
    use faultline_model::Timestamp;

    fn entry(src_ns: Option<&str>, dst_ns: Option<&str>) -> Entry {
        let ep = |ns: Option<&str>| Endpoint {
            namespace: ns.map(str::to_owned),
            ..Endpoint::new("10.0.0.1".parse().expect("ip"), Some(1))
        };
        Entry::new(Protocol::Tcp, Timestamp(0), ep(src_ns), ep(dst_ns))
    }

    #[test]
    fn a_scope_sees_entries_touching_its_namespaces_only() {
        let scope = Scope { everything: false, namespaces: HashSet::from(["shop".to_owned()]) };
        assert!(scope.sees(&entry(Some("shop"), Some("other"))));
        assert!(scope.sees(&entry(None, Some("shop"))));
        assert!(!scope.sees(&entry(Some("other"), Some("other"))));
        assert!(!scope.sees(&entry(None, None)), "entries of no pod are for cluster-wide viewers");
        let all = Scope { everything: true, namespaces: HashSet::new() };
        assert!(all.sees(&entry(None, None)));
    }

    #[test]
    fn namespaces_are_collected_once() {
        let es = [entry(Some("a"), Some("b")), entry(Some("b"), None)];
        let got = namespaces_of(es.iter());
        assert_eq!(got, HashSet::from(["a", "b"]));
    }
}
