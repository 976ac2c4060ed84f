@main
struct FjordCommand { static func main() {} }
