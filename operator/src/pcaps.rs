//! `GET /api/v1/entries/{id}/pcap`: the recording of an error entry's flow, for Wireshark. Recordings can
//! hold secrets, so the caller must be allowed to read ErrorViews in the namespace of the entry's source
//! or destination pod (or in the operator's namespace, whose views see everything).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::dashboard::access::{namespaces_of, Access};
use crate::store::Store;

#[derive(Clone)]
pub struct Pcaps {
    /// Always with a token, even where the dashboard is open to anonymous callers.
    pub access: Access,
    pub store: Arc<Store>,
}

pub async fn handle(State(p): State<Pcaps>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let viewer = match p.access.viewer(&headers).await {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let Some((entry, pcap)) = p.store.pcap(&id) else {
        return (StatusCode::NOT_FOUND, "no recording for this entry (recording off, or it aged out)\n")
            .into_response();
    };
    match p.access.scope(&viewer, namespaces_of([entry.as_ref()])).await {
        Ok(scope) if scope.sees(&entry) => {
            let name = format!("attachment; filename=\"{id}.pcap\"");
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, "application/vnd.tcpdump.pcap".to_owned()),
                    (header::CONTENT_DISPOSITION, name),
                ],
                pcap.as_ref().clone(),
            )
                .into_response()
        }
        Ok(_) => (StatusCode::FORBIDDEN, "you may not read ErrorViews where this entry happened\n").into_response(),
        Err(r) => r.into_response(),
    }
}
