//! Who is calling: TokenReview for bearer tokens, SubjectAccessReview for what they may see. Used by the
//! agents' ingest endpoint and, through `dashboard::access`, by the dashboard and the pcap endpoint.

use axum::http::HeaderMap;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};

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
    let review = TokenReview {
        spec: TokenReviewSpec { token: token.to_owned(), audiences: audience.map(|a| vec![a.to_owned()]) },
        ..TokenReview::default()
    };
    let answer = Api::<TokenReview>::all(client.clone()).create(&PostParams::default(), &review).await?;
    let status = answer.status.unwrap_or_default();
    let for_audience = audience.is_none_or(|a| status.audiences.iter().flatten().any(|x| x == a));
    Ok(if status.authenticated == Some(true) && for_audience { status.user } else { None })
}

/// Whether `user` may read ErrorViews in `namespace` — RBAC on ErrorViews is access to error data.
pub async fn may_read_errorviews(client: &Client, user: &UserInfo, namespace: &str) -> Result<bool, kube::Error> {
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            groups: user.groups.clone(),
            uid: user.uid.clone(),
            extra: user.extra.clone(),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_owned()),
                verb: Some("get".to_owned()),
                group: Some("faultline.dev".to_owned()),
                resource: Some("errorviews".to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = Api::<SubjectAccessReview>::all(client.clone()).create(&PostParams::default(), &sar).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}
