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

/// A GDAL error as its message alone: "CPL error class: '3', error number: '1', error msg:
/// 'x.tif: ... failed.'" → "x.tif: ... failed.", on one line.
pub fn gdal_message(e: impl std::fmt::Display) -> String {
    let m = one_line(e);
    match m.split_once("error msg: '") {
        Some((_, rest)) => rest.strip_suffix('\'').unwrap_or(rest).to_string(),
        None => m,
    }
}

/// Makes a GDAL message fit on one line.
pub fn one_line(msg: impl std::fmt::Display) -> String {
    msg.to_string().split_whitespace().collect::<Vec<_>>().join(" ")
}
