//! Push notifications through Firebase Cloud Messaging's HTTP v1 API.
//!
//! A bot's push connection holds a Google service account (project id, client email, private
//! key), sealed like every credential. A widget registers its device's token on its socket
//! (`push_token`); when the bot or an agent writes while none of the visitor's sockets is
//! open, each registered device gets a notification. The access token comes from Google's
//! OAuth2 service-account flow: a JWT signed RS256 with the private key (`iss` the client
//! email, `scope` firebase.messaging, `aud` the token URI, one hour), exchanged at the token
//! URI for a bearer token, cached until a minute before it expires. A device FCM reports as
//! `UNREGISTERED` (404) is forgotten.

mod client;

/// The connection's credentials, sealed at rest (the domain's type: the admin API builds them).
pub use parla_domain::channels::PushSecrets as Secrets;
