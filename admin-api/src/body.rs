//! The JSON body extractor of the API: like `web::Json` (same size limit and error shape), but
//! the body must be a JSON *object* — serde would otherwise accept a struct written as an
//! array (`[null, null]`), positionally, which no client means and the OpenAPI document does
//! not allow.

use std::{future::Future, pin::Pin};

use actix_web::{FromRequest, HttpRequest, dev::Payload, http::StatusCode, web};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Json<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

fn malformed(message: String) -> actix_web::Error {
    ApiError::new(StatusCode::BAD_REQUEST, "malformed_body", message).into()
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, actix_web::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // Reading and parsing, with the app's JsonConfig (limit, errors in the API's shape).
        let value = web::Json::<serde_json::Value>::from_request(req, payload);
        Box::pin(async move {
            let value = value.await?.into_inner();
            if !value.is_object() {
                return Err(malformed("invalid JSON body: expected a JSON object".into()));
            }
            serde_json::from_value(value)
                .map(Json)
                .map_err(|e| malformed(format!("invalid JSON body: {e}")))
        })
    }
}
