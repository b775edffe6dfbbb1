module godecode

go 1.19
