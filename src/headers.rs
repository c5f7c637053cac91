//! Security headers on every response Parla serves, public and operations listener alike.
//!
//! Parla's own pages (the demo page at `/`, the console at `/console`) load only their own
//! scripts (no inline script, no `eval`), connect only to their own origin, and may not be
//! framed by any page (`frame-ancestors 'none'`, and `X-Frame-Options: DENY` for browsers that
//! predate CSP): clickjacking a signed-in agent's console is off the table. The widget keeps
//! working on tenants' sites because it is a script a page loads (`/widget.js`), never a
//! frame: the policy of the page embedding it is the tenant's, not this one.
//!
//! Applied as defaults: a handler that sets one of these headers itself keeps its own.

use actix_web::middleware::DefaultHeaders;

/// Parla's pages: scripts and connections from their own origin only (`'self'` covers the
/// same-origin `ws:`/`wss:` sockets); inline styles stay allowed (the pages and the widget set
/// `style` attributes; a style cannot run code); images may come from `https:` anywhere (bot
/// avatars and rich messages point at tenants' own hosts) and `data:`/`blob:` (generated).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data: blob: https:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

/// The headers every response gets unless its handler set them.
pub fn security() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .add(("X-Frame-Options", "DENY"))
        .add(("X-Content-Type-Options", "nosniff"))
        // Console URLs can carry one-time tokens (reset and invitation links): never sent on.
        .add(("Referrer-Policy", "no-referrer"))
        // A window this page opens cannot reach back into it (window.opener).
        .add(("Cross-Origin-Opener-Policy", "same-origin"))
}

/// With TLS on: browsers use HTTPS only for this host for a year (HSTS).
pub fn strict_transport() -> DefaultHeaders {
    DefaultHeaders::new().add(("Strict-Transport-Security", "max-age=31536000"))
}
