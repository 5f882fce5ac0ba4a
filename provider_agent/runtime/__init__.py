"""Workload runtimes: WebAssembly (default) and, where a provider opts in, native processes."""
