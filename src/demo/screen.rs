//! The demo's live screen on a terminal, drawn with crossterm: the alternate screen (the user's
//! scrollback is left as it was), the cursor hidden and moved to each line in place rather than
//! the screen cleared, no line wrapping, and nothing written past the last row, so the screen
//! never scrolls. The caller fits the lines to [`size`] at every redraw and redraws on SIGWINCH.
//! Leaving restores the main screen; so does dropping, so an error or a panic leaves the
//! terminal usable.

use std::io::{self, Stdout, Write};

use crossterm::style::{Color, Print, PrintStyledContent, Stylize};
use crossterm::terminal::{self, ClearType};
use crossterm::{cursor, execute, queue};

use super::layout::{Line, State};

pub struct Screen {
    out: Stdout,
    active: bool,
}

/// The terminal's (columns, rows); 80×24 if it cannot be asked.
pub fn size() -> (usize, usize) {
    terminal::size().map_or((80, 24), |(w, h)| (usize::from(w), usize::from(h)))
}

fn color(state: State) -> Color {
    match state {
        State::Down => Color::Red,
        State::Degraded | State::Stale => Color::Yellow,
        State::Up => Color::Green,
        State::Maintenance => Color::Cyan,
        State::Unknown | State::Unavailable => Color::DarkGrey,
    }
}

impl Screen {
    pub fn enter() -> io::Result<Self> {
        let mut out = io::stdout();
        execute!(
            out,
            terminal::EnterAlternateScreen,
            terminal::DisableLineWrap,
            cursor::Hide
        )?;
        Ok(Self { out, active: true })
    }

    /// Draws `lines` from the top, each over what the line held before, and clears the rest.
    pub fn draw(&mut self, lines: &[Line], (columns, rows): (usize, usize)) -> io::Result<()> {
        let shown = lines.len().min(rows);
        for (y, line) in lines[..shown].iter().enumerate() {
            queue!(self.out, cursor::MoveTo(0, y as u16))?;
            match &line.paint {
                Some((range, state)) => {
                    let word = line.text[range.clone()].to_owned().with(color(*state));
                    let word = if *state == State::Down {
                        word.bold()
                    } else {
                        word
                    };
                    queue!(
                        self.out,
                        Print(&line.text[..range.start]),
                        PrintStyledContent(word),
                        Print(&line.text[range.end..])
                    )?;
                }
                None => queue!(self.out, Print(&line.text))?,
            }
            // A full line leaves the cursor on its last character (no wrapping): keep it.
            if line.text.chars().count() < columns {
                queue!(self.out, terminal::Clear(ClearType::UntilNewLine))?;
            }
        }
        if shown < rows {
            queue!(
                self.out,
                cursor::MoveTo(0, shown as u16),
                terminal::Clear(ClearType::FromCursorDown)
            )?;
        }
        self.out.flush()
    }

    /// Back to the main screen, with the cursor and line wrapping as they were.
    pub fn leave(&mut self) {
        if std::mem::take(&mut self.active) {
            let _ = execute!(
                self.out,
                cursor::Show,
                terminal::EnableLineWrap,
                terminal::LeaveAlternateScreen
            );
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.leave();
    }
}
