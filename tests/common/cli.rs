//! One finished run of the `tark-wasmer` binary and the exit-code checks the CLI tests share.

/// Exit code and output of one `tark-wasmer` run.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Exit 0, else a failure that shows both streams.
    pub fn ok(self) -> Self {
        self.fails_with(0)
    }

    /// Exit 1 (a general error).
    pub fn fails(self) -> Self {
        self.fails_with(1)
    }

    /// Exit `code` (see `tark-wasmer --help`: 1 general, 2 usage, 3 plugin, 4 host/limit).
    pub fn fails_with(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}
