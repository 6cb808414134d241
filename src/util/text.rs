//! Messages on one line: every error simreg prints is one line.

/// A libtorch error without the C++ backtrace libtorch appends ("Exception raised from ...").
pub fn torch_message(msg: impl std::fmt::Display) -> String {
    let m = msg.to_string();
    one_line(
        m.split(" Exception raised from")
            .next()
            .unwrap_or(&m)
            .split("\nException raised from")
            .next()
            .unwrap_or(&m),
    )
}

/// Makes a GDAL message fit on one line.
pub fn one_line(msg: impl std::fmt::Display) -> String {
    msg.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}
