//! Who is calling: TokenReview for bearer tokens, SubjectAccessReview for what they may see. Used by the
//! agents' ingest endpoint and, through `dashboard::access`, by the dashboard and the pcap endpoint.

use axum::http::HeaderMap;
use k8s_openapi::api::authentication::v1::{TokenReview, UserInfo};
use k8s_openapi::api::authorization::v1::SubjectAccessReview;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The authenticated user behind a token, or `None` when the API server does not accept it. With an
/// `audience`, the token must be issued for it: the API server checks, and the answer must say so.
pub async fn review(client: &Client, token: &str, audience: Option<&str>) -> Result<Option<UserInfo>, kube::Error> {
    let mut spec = json!({"token": token});
    if let Some(a) = audience {
        spec["audiences"] = json!([a]);
    }
    let review: TokenReview = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec
    }))
    .map_err(kube::Error::SerdeError)?;
    let answer = Api::<TokenReview>::all(client.clone()).create(&PostParams::default(), &review).await?;
    let status = answer.status.unwrap_or_default();
    let for_audience = audience.is_none_or(|a| status.audiences.iter().flatten().any(|x| x == a));
    Ok(if status.authenticated == Some(true) && for_audience { status.user } else { None })
}

/// Whether `user` may read ErrorViews in `namespace` — RBAC on ErrorViews is access to error data.
pub async fn may_read_errorviews(client: &Client, user: &UserInfo, namespace: &str) -> Result<bool, kube::Error> {
    let sar: SubjectAccessReview = serde_json::from_value(json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": user.username, "groups": user.groups, "uid": user.uid, "extra": user.extra,
            "resourceAttributes": {"namespace": namespace, "verb": "get", "group": "faultline.dev",
                                   "resource": "errorviews"},
        },
    }))
    .map_err(kube::Error::SerdeError)?;
    let answer = Api::<SubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &sar).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
