//! Column alignment with the exact semantics of Go's `text/tabwriter`, which `cilium` uses
//! for every table (`NewWriter(out, 5, 0, 3, ' ', 0)`), so our tables line up byte for byte.
//!
//! Cells are tab-terminated; the text after a line's last tab is not part of any column.
//! A column block is a run of consecutive lines that all have a cell in that column; the
//! block's width is its widest cell plus the padding, at least the minimum width.

/// A buffered table writer.
#[derive(Debug)]
pub struct TabWriter {
    minwidth: usize,
    padding: usize,
    lines: Vec<Vec<String>>,
}

impl TabWriter {
    /// Cilium's settings: minimum width 5, padding 3, pad with spaces.
    pub fn cilium() -> Self {
        Self {
            minwidth: 5,
            padding: 3,
            lines: Vec::new(),
        }
    }

    /// Add one line of text containing tabs (no newline).
    pub fn line(&mut self, text: &str) {
        self.lines
            .push(text.split('\t').map(str::to_owned).collect::<Vec<_>>());
    }

    /// Format everything buffered. Every line ends with a newline.
    pub fn finish(self) -> String {
        let mut out = String::new();
        let mut widths = Vec::new();
        self.format(&mut out, &mut widths, 0, self.lines.len());
        out
    }

    fn format(&self, out: &mut String, widths: &mut Vec<usize>, mut line0: usize, line1: usize) {
        let column = widths.len();
        let mut this = line0;
        while this < line1 {
            if column + 1 >= self.lines[this].len() {
                this += 1;
                continue;
            }
            // A block starts here: print the lines before it with the widths known so far.
            self.write_lines(out, widths, line0, this);
            line0 = this;
            let mut width = self.minwidth;
            while this < line1 && column + 1 < self.lines[this].len() {
                let w = self.lines[this][column].chars().count() + self.padding;
                width = width.max(w);
                this += 1;
            }
            widths.push(width);
            self.format(out, widths, line0, this);
            widths.pop();
            line0 = this;
        }
        self.write_lines(out, widths, line0, line1);
    }

    fn write_lines(&self, out: &mut String, widths: &[usize], line0: usize, line1: usize) {
        for line in &self.lines[line0..line1] {
            for (j, cell) in line.iter().enumerate() {
                out.push_str(cell);
                if let Some(&w) = widths.get(j) {
                    let pad = w.saturating_sub(cell.chars().count());
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_like_go_tabwriter() {
        let mut tw = TabWriter::cilium();
        tw.line("a\tbbb\tc\t");
        tw.line("aaaa\tb\t");
        tw.line("x");
        tw.line("y\tz\t");
        let out = tw.finish();
        // Column 0 block spans lines 0-1 (width 4+3=7); line 2 breaks the block;
        // line 3 starts a new block (width max(1+3, 5) = 5).
        assert_eq!(out, "a      bbb   c    \naaaa   b     \nx\ny    z    \n");
    }

    #[test]
    fn empty_input() {
        assert_eq!(TabWriter::cilium().finish(), "");
    }
}
