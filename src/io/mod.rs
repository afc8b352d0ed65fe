//! The bottom of the data path: owned-buffer reads and writes with deadlines (`owned`), one
//! lazily armed timer per connection (`deadline`), and the time read once per poll (`clock`).

pub mod clock;
pub mod deadline;
pub mod drain;
pub mod fd;
pub mod owned;
pub mod socket;
