//! What an auditor asks of the log, answered from the log alone: no writer, no service, no
//! store of its own. The CLI's `audit log` and `audit state` read the log (checking the
//! chain) and ask [`timeline`] what to print.

pub mod timeline;
