"""One widget per module; styles live in the .tcss files next to the app."""
