//! Every capability decision in one place: HTTP/WebSocket hosts, environment names,
//! file paths. (Stub: being filled in.)
