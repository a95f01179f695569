//! Host services (storage, http, ws, env, log, fs) as plain Rust, independent of the
//! ABI a guest uses to reach them. (Stub: being filled in.)
