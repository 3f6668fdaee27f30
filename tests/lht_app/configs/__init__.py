# configs/ is a package in the template layout (so it ships when the project is installed)
