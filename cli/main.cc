// The dsv4 command (placeholder until the op and run commands land in this commit series).
#include <cstdio>
int main() { std::puts("dsv4"); return 0; }
