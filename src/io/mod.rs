//! The bottom of the data path: owned-buffer reads and writes with deadlines (`owned`), one
//! lazily armed timer per connection (`deadline`), the time read once per poll (`clock`), and
//! handing freed memory back to the system (`memory`).

pub mod clock;
pub mod deadline;
pub mod drain;
pub mod fd;
pub mod memory;
pub mod owned;
pub mod socket;
