"""Web views of runs: a server-side SVG Gantt timeline and a self-contained run report."""
