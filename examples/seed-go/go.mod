module ringecho/examples/seed-go

go 1.19
