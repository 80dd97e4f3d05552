//! The stdout sink: whole lines under the stdout lock, so they never interleave with the
//! lines the daemon prints itself.

use std::io::{self, Write as _};

use super::writer::LineTarget;

pub(super) struct Stdout;

impl LineTarget for Stdout {
    fn write(&mut self, lines: &[Vec<u8>]) -> Result<(), (usize, io::Error)> {
        let mut out = io::stdout().lock();
        for (written, line) in lines.iter().enumerate() {
            out.write_all(line).map_err(|err| (written, err))?;
        }
        Ok(())
    }

    fn sync(&mut self, _closing: bool) -> io::Result<()> {
        io::stdout().lock().flush()
    }
}
