# The application's own module: one S3 client for the process, made when it is imported, as
# many services do. boto3 reads ~/.aws/credentials; nothing goes over the network.
import boto3

session = boto3.Session()
credentials = session.get_credentials()
s3 = session.client("s3", region_name="us-east-1")
